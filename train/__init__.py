"""Emergence: train a small transformer on one task at a time, then measure superposition.

The paper's second claim is that task superposition emerges even in a model trained
to in-context learn one task per prompt. ``data`` generates single-task prompts in the
construction's prompt format, ``model`` is a small GPT-style Flax transformer,
``trainer`` trains it with optax (checkpoints, resume, deterministic seed), and
``mixtures`` measures calibration on mixed prompts next to the constructed model. The
character-retrieval experiment (``data.position_tasks``, the arms of ``data.arm_batch``)
adds ``bayes``, the Bayes-optimal predictor of each arm's training distribution, and
``emergence``, its evaluation against those references.
"""
