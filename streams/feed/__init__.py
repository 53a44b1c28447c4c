"""The regulator feed (README "Regulator feed"): records the worker publishes about flagged
numbers and the operator's decisions on them (``records``), and ``dialwatch feed export``
(``period``, ``export``, ``source``, ``cli``)."""
