"""scaletune.report"""
