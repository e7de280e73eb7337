"""What the model is sent, sans-I/O: the model-facing history and its
compaction, collaboration modes, review prompts and answers.

=====================  =======================================================
``history``            the model-facing history: turns, rollback, compaction
``collaboration``      collaboration modes and their instructions
``review``             ``review/start``: prompts and the reviewer's answer
=====================  =======================================================
"""
