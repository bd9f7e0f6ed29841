"""The machinery that runs a search: training jobs on Ray (`jobs`, the only module that
imports ray), the loop between strategy and executor (`runner`), and the run directory
with its write-ahead journal (`store`). The algorithm it runs is `petrinas.search`."""
