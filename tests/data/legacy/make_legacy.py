"""Writes the weight files that tests/test_legacy_weights.py loads: one of each format, saved
by the code of commit 345f1f7 (before the library/application restructuring), with the
outputs that code gave on fixed inputs. Kept for provenance: it imports that commit's module
paths, the files are committed, and the tests never run it. To write them again:

    git worktree add /tmp/old 345f1f7
    PYTHONPATH=/tmp/old/src python tests/data/legacy/make_legacy.py
"""

from pathlib import Path

import torch

from deltalearn.engine.checkpoint import save_weights
from deltalearn.export.onnx import export_onnx
from deltalearn.mae.model import MAEConfig, MaskedAutoencoder
from deltalearn.mae.seg_head import SegHeadConfig, build_segmenter, save_seg_head
from deltalearn.mae.weights import save_mae
from deltalearn.mcn.backbones import normalize_images
from deltalearn.mcn.config import MCNConfig
from deltalearn.mcn.inference import ModelInfo, build_model

HERE = Path(__file__).parent

torch.manual_seed(0)
config = MCNConfig()
config.data.image_size = 64
config.model.backbone = "mobilenetv3_small_050"
config.model.neck_channels = config.model.head_channels = 8
config.model.box_regression = "region"
info = ModelInfo(config=config, category_ids=[1, 3], category_names=["person", "car"])
model = build_model(info).eval()
images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    outputs = model(normalize_images(images))
save_weights(model, HERE / "mcn.safetensors", metadata=info.metadata())
export_onnx(model, info, HERE / "mcn_decoded.onnx", decode=True)

mae_config = MAEConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=16,
                       decoder_depth=1, decoder_num_heads=2)
mae = MaskedAutoencoder(mae_config).eval()
save_mae(mae, HERE / "mae.safetensors")
head_config = SegHeadConfig()
head_config.head.hidden = 8
head_config.head.refine_channels = 4
segmenter = build_segmenter(mae, head_config.head).eval()
mae_images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    for parameter in segmenter.head.parameters():  # not the zero-initialised identity
        parameter.add_(0.1 * torch.randn_like(parameter))
    for parameter in segmenter.refiner.parameters():
        parameter.add_(0.1 * torch.randn_like(parameter))
    segmenter.head.norm.running_mean.normal_()
    head_logits = segmenter(mae_images)["logits"]
    reconstruction = mae.forward_decoder(*mae.forward_encoder(mae_images, mask=torch.zeros(2, 16))[::2])
save_seg_head(segmenter, HERE / "seg_head.safetensors", head_config, mae_source="mae.safetensors")

save_weights({"images": images, "mae_images": mae_images, "head_logits": head_logits, "reconstruction": reconstruction,
              **{f"mcn.{k}": v for k, v in outputs.items()}}, HERE / "expected.safetensors",
             metadata={"commit": "345f1f7"})
print({p.name: p.stat().st_size for p in HERE.iterdir()})
