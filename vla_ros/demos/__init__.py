"""Demonstration capture (`vla-ros record-demos`): one bag per episode with start/stop marks and a success label,
and the running table of episodes. The bags become a training set with `vla-ros data import`."""
