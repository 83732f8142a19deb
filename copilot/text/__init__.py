"""Clinical text understood once, for everyone above it (QC, drafting, de-identification).

Nothing here knows about rules, prompts or findings: it reads sections, sentences, negation
and medication mentions out of text, and the layers above decide what they mean.
"""
