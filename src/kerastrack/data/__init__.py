"""Data sets: the named sets as train/validation/test arrays (``sets``), where their files come
from (``files``), the optimizer lab's constructed problems (``lab``) and what ``fit`` reads
(``feed``)."""

from kerastrack.data.sets import Dataset, csv, keras_images, sklearn_set

__all__ = ["Dataset", "csv", "keras_images", "sklearn_set"]
