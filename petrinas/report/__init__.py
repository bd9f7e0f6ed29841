"""What a run shows: pool and gallery tables, figures, TensorBoard events and the status
line. The search and the eval stage assemble these writers; none of them decides
anything."""
