"""Alert delivery: the sink service (``service``) and its targets (``webhook``, ``slack``, ``discord``,
``telegram``, ``postgres``, ``jsonl``, ``stdout``), built from the config by ``factory.build_targets``;
``tail`` reads ``fw.alerts`` as a downstream consumer would. See docs/alerts.md."""
