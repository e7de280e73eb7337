"""Files: the ``apply_patch`` format and carrying out a patch, the client's
own file operations (``fs/*``), the fuzzy file search.

=====================  =======================================================
``apply_patch``        the ``apply_patch`` format: parse, plan, apply
``patch_writer``       carrying out a planned patch, undoing on failure
``fs_ops``             the file operations behind ``fs/*``
``file_search``        the fuzzy file search (``@`` mentions)
=====================  =======================================================
"""
