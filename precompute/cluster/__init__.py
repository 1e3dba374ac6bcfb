"""Running an extraction on a Ray cluster: the executor, its options and where shards are staged."""
