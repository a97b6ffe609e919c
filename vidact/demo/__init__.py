"""``vidact demo``: the pipeline on the built-in synthetic set (:mod:`.pipeline`) and its report (:mod:`.report`)."""
