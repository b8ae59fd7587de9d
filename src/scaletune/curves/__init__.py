"""scaletune.curves"""
