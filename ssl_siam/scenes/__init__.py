"""Scene classification finetuning: a timm encoder (an ``ssl-siam pretrain`` export, local timm weights or random)
and a linear head trained end to end on the labelled images of a class folder — the ``finetune`` arm of scene
studies, run by the shared launcher and loop."""
