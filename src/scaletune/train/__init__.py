"""scaletune.train"""
