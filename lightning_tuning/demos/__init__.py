"""Demo tasks: plain LightningModules and DataModules that know nothing of this package.

They stand in for the user's own code in the configs under ``configs/``:

- MNIST-1D: :class:`MNIST1DDataModule` with :class:`MNIST1DConvNet` or :class:`MNIST1DMLP`;
- scikit-learn digits: :class:`DigitsDataModule` with :class:`DigitsConvNet`;
- character-level language model: :class:`CharLMDataModule` with :class:`CharTransformer`;
- a GAN written like third-party code (manual optimization, two optimizers): :class:`RingGAN` on
  :class:`RingDataModule`, a ring of Gaussians in the plane.

Every classifier logs ``train_loss``, ``val_loss``, ``val_acc``, ``test_loss`` and ``test_acc``; the language model
adds ``val_ppl``; the GAN logs ``d_loss``, ``g_loss``, ``val_mode_distance`` and ``val_modes_covered``.
"""

from lightning_tuning.demos.char_lm import CharLMDataModule, CharTransformer
from lightning_tuning.demos.classification import ClassificationModule
from lightning_tuning.demos.digits import DigitsConvNet, DigitsDataModule
from lightning_tuning.demos.gan import RingDataModule, RingGAN
from lightning_tuning.demos.mnist1d_data import MNIST1DDataModule
from lightning_tuning.demos.mnist1d_models import MNIST1DMLP, MNIST1DConvNet

__all__ = [
    "CharLMDataModule",
    "CharTransformer",
    "ClassificationModule",
    "DigitsConvNet",
    "DigitsDataModule",
    "MNIST1DConvNet",
    "MNIST1DDataModule",
    "MNIST1DMLP",
    "RingDataModule",
    "RingGAN",
]
