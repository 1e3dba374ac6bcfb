"""The Streamlit explorer's own code, under the pages of ``views/``: cached loaders
(``data``), pure table logic (``table``, ``feature_parts``), widgets and URL state
(``ui``), the page registry (``nav``) and the feature page's sections
(``sections/``). docs/extending.md ("Layers") says which way imports go; nothing
here imports torch.
"""
