"""``ssl-siam study``: label-efficiency and unseen-disaster studies — a paired grid of finetuning runs over
encoders × label budgets × seeds, aggregated with confidence intervals."""
