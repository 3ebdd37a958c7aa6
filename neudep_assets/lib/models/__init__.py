"""Models: timm creation, checkpoints in timm's folder format, training, logits."""

from neudep_assets.lib.models.checkpoint_io import (CONFIG_NAME, WEIGHTS_NAME, load_checkpoint, read_checkpoint_config,
                                                    save_checkpoint, weights_sha256)
from neudep_assets.lib.models.checkpoints import CheckpointInfo, obtain_checkpoint, split_logits
from neudep_assets.lib.models.logits import compute_logits, imagefolder_logits, pick_device
from neudep_assets.lib.models.timm_models import (CheckpointError, PretrainedWeightsUnavailable, create_model,
                                                  model_data_config, model_in_chans, num_classes_of, num_features)
from neudep_assets.lib.models.training import train_classifier
from neudep_assets.lib.specs import TRAIN_DEFAULTS, ModelSpec, resolve_train_config

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "load_checkpoint", "read_checkpoint_config", "save_checkpoint",
           "weights_sha256", "CheckpointInfo", "obtain_checkpoint", "split_logits", "compute_logits",
           "imagefolder_logits", "pick_device", "CheckpointError", "PretrainedWeightsUnavailable", "create_model",
           "model_data_config", "model_in_chans", "num_classes_of", "num_features", "resolve_train_config",
           "train_classifier", "ModelSpec", "TRAIN_DEFAULTS"]
