"""scaletune.laws"""
