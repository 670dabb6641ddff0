"""The ARM test: the same .pte on emulated aarch64 CPUs (see test_arm.py and README section 6)."""
