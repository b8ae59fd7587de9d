"""scaletune.hparams"""
