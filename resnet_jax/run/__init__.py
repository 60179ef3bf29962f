"""What a run keeps in its workdir or says about it: checkpoints, the record of how it was
trained, the workdir lock, metrics and the console, stop requests (preemption, time
budget), the non-finite guard and the persistent compilation cache."""
