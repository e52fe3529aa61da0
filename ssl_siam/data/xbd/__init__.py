"""xBD: pairs of split folders, label JSON → masks, the target cache, pair crops and building crops."""
