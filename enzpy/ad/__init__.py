"""AD drivers: the only place where forward and reverse mode differ."""
