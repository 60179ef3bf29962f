"""What a run actually read: the source its data config resolved to, where, and a fingerprint
that changes when the data do."""
import dataclasses


@dataclasses.dataclass(frozen=True)
class DataOrigin:
  """The data a source read. `source` is never 'auto'; `location` is the archive, folder or
  TFDS data_dir read (None for generated images); `fingerprint` is the decoded cache's for an
  archive or folder (path, sizes, mtimes), the name/version for TFDS."""
  source: str
  location: str | None = None
  fingerprint: str | None = None

  def describe(self) -> str:
    """E.g. 'archive /data/cifar10-jpeg.tar.gz', for the console."""
    return self.source if self.location is None else f'{self.source} {self.location}'
