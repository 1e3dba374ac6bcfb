"""The GPU half of the project: extraction, scoring, evidence, training, jobs.

``python -m precompute <command>`` (``precompute.cli``) is the entry point.
The folders group the modules by what they do: ``common``, ``models``,
``extract``, ``evidence``, ``train``, ``sweep``, ``cluster``, ``publishing``
and ``serve`` (docs/extending.md, "Layers"). Importing a module of this
package never imports torch; the functions that need it import it when called.
"""
