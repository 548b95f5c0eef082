"""MFH (Xue et al., ICLR 2023): the modality focusing hypothesis (``shared/papers.md`` §1).

One module per notebook: :mod:`.gaussian` (02_mfh_gaussian: Fig. 2 and Fig. 3),
:mod:`.table2` (02_mfh_table2: Table 2 and Algorithm 1), :mod:`.real` (02_mfh_real: the
real-data protocol), :mod:`.case_studies` (02_mfh_case_studies: §2's unimodal vs multimodal
teacher and the removal-ratio sweep); :mod:`.common` holds what they share.
"""
