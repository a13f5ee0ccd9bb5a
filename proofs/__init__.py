"""Machine checks of the theorem in ``proofs/theorem.md``: one sympy check per lemma.

``superpose.proofs.checks.ALL_CHECKS`` lists them in the order of the proof and
``superpose prove`` runs them (``superpose.proofs.cli``).
"""
