"""scaletune.study"""
