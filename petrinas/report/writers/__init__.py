"""The writers a stage's `Reporter` calls (see reporter.py), one output each:

* pool.py        pool.tsv, every trial (sorted by id at the start and the end);
* frontier.py    frontier.tsv / frontier_eps.tsv (the hull and its ε-band) and the eval
                 stage's frontier.md / frontier.tex;
* gallery.py     gallery/<trial>/, a copy of each band member's model (the search);
* hypervolume.py hypervolume.tsv (the search);
* figures.py     when the stage's figures are drawn (figures.py in report/ draws them);
* tensorboard.py TensorBoard event files under tensorboard/ (events.py writes them);
* status.py      the status line on screen, with its ETA (progress.py prints it).
"""

from petrinas.report.writers.figures import FigureWriter
from petrinas.report.writers.frontier import FrontierDocuments, FrontierTables
from petrinas.report.writers.gallery import GalleryFolders
from petrinas.report.writers.hypervolume import HypervolumeTable
from petrinas.report.writers.pool import PoolTable
from petrinas.report.writers.status import StatusLine
from petrinas.report.writers.tensorboard import TensorBoardWriter

__all__ = ["FigureWriter", "FrontierDocuments", "FrontierTables", "GalleryFolders",
           "HypervolumeTable", "PoolTable", "StatusLine", "TensorBoardWriter"]
