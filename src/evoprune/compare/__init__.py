"""The paper's comparison: repeated runs of each encoding and the pruning baselines."""
