"""Who runs on the model next: the lock (clicks first), preemption points inside model passes,
measured costs and the memory budget."""
