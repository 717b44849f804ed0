r"""Writes the BigGAN-deep import's test fixtures (run once).

Needs torch and a checkout of the PyTorch port of BigGAN-deep
(huggingface/pytorch-pretrained-BigGAN); neither is a dependency of ppcd_tf or
of its tests, which only read what this writes:

  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
  git clone https://github.com/huggingface/pytorch-pretrained-BigGAN /tmp/ppb
  /tmp/torchenv/bin/python tools/make_biggan_deep_fixtures.py \
      --port_dir /tmp/ppb --output_dir tests/fixtures/biggan_deep_128_ch4

Builds the port's own `BigGAN` module (its `model.py` and `config.py`; the
package's download helpers are not loaded) in the released 128x128 layout
(ten bottleneck blocks, attention before the ninth) at channel width 4, with
10 classes, z and class embedding of 16 and 51 rows of per-truncation BN
statistics; gives every parameter and buffer random values (attention gamma,
the statistics tables and the final BN's affine parameters included, so that
nothing is trivially zero or one; the spectral-norm vectors u, v as the port's
converter leaves them: one power iteration from a random u), and writes:

  pytorch_model.bin  (torch.save of the state dict, legacy format, as the
    2019 release was saved), config.json (the port's config)
  reference.npz: z [2, 16], labels [2], truncations [T] (float64),
    images_<i> [2, 3, 32, 32]: the port's images (eval mode, no grad) at
    truncations[i], every fourth pixel of the 128x128 output in each
    direction (each pixel depends on the whole network)
  source.json: the port's commit, torch version and these settings.
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import types

import numpy as np
import torch

SETTINGS = dict(channel_width=4, z_dim=16, class_embed_dim=16,
                num_classes=10, n_stats=51, eps=1e-4, output_dim=128,
                attention_layer_position=8, seed=0, batch=2, stride=4)
# Grid points (1.0, 0.5), a grid point that float64 division puts just above
# itself (0.28 / 0.02 = 14.000000000000002: the port then reads almost all of
# row 15, see ppcd_tf.models.truncation) and a value between two rows.
TRUNCATIONS = (1.0, 0.5, 0.28, 0.43)


def _load_port(port_dir):
    """The port's `config` and `model` modules, without its package
    `__init__` (which imports boto3/requests for downloads)."""
    root = os.path.join(port_dir, "pytorch_pretrained_biggan")
    package = types.ModuleType("pytorch_pretrained_biggan")
    package.__path__ = [root]
    sys.modules["pytorch_pretrained_biggan"] = package
    stub = types.ModuleType("pytorch_pretrained_biggan.file_utils")

    def cached_path(*args, **kwargs):
        raise RuntimeError("the fixture tool never downloads")

    stub.cached_path = cached_path
    sys.modules["pytorch_pretrained_biggan.file_utils"] = stub
    config = importlib.import_module("pytorch_pretrained_biggan.config")
    model = importlib.import_module("pytorch_pretrained_biggan.model")
    return config, model


def _randomise(model, generator, eps):
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("gamma"):
                tensor.fill_(0.7)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator)
                             * 0.2)
        for name, tensor in model.named_buffers():
            if name.endswith("running_means"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator)
                             * 0.2)
            elif name.endswith("running_vars"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator)
                             + 0.5)
        # The converter's u, v: one power iteration from a random u.
        for module in model.modules():
            if not hasattr(module, "weight_orig"):
                continue
            weight = module.weight_orig.reshape(
                module.weight_orig.shape[0], -1)
            u = torch.randn(weight.shape[0], generator=generator)
            v = torch.nn.functional.normalize(weight.t() @ u, dim=0, eps=eps)
            u = torch.nn.functional.normalize(weight @ v, dim=0, eps=eps)
            module.weight_u.copy_(u)
            module.weight_v.copy_(v)


def _commit(port_dir):
    try:
        return subprocess.run(["git", "-C", port_dir, "rev-parse", "HEAD"],
                              capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port_dir", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--commit", default=None,
                        help="The port's commit (default: git rev-parse).")
    args = parser.parse_args()
    config_lib, model_lib = _load_port(args.port_dir)
    generator = torch.Generator().manual_seed(SETTINGS["seed"])
    config = config_lib.BigGANConfig(
        output_dim=SETTINGS["output_dim"], z_dim=SETTINGS["z_dim"],
        class_embed_dim=SETTINGS["class_embed_dim"],
        channel_width=SETTINGS["channel_width"],
        num_classes=SETTINGS["num_classes"],
        attention_layer_position=SETTINGS["attention_layer_position"],
        eps=SETTINGS["eps"], n_stats=SETTINGS["n_stats"])
    model = model_lib.BigGAN(config)
    _randomise(model, generator, SETTINGS["eps"])
    model.eval()
    os.makedirs(args.output_dir, exist_ok=True)
    torch.save(model.state_dict(),
               os.path.join(args.output_dir, "pytorch_model.bin"),
               _use_new_zipfile_serialization=False)
    with open(os.path.join(args.output_dir, "config.json"), "w") as f:
        f.write(config.to_json_string())
    batch = SETTINGS["batch"]
    z = torch.randn(batch, SETTINGS["z_dim"], generator=generator)
    labels = torch.arange(batch) * 3 % SETTINGS["num_classes"]
    one_hot = torch.nn.functional.one_hot(
        labels, SETTINGS["num_classes"]).float()
    arrays = dict(z=z.numpy(), labels=labels.numpy(),
                  truncations=np.array(TRUNCATIONS, np.float64))
    stride = SETTINGS["stride"]
    with torch.no_grad():
        for index, truncation in enumerate(TRUNCATIONS):
            images = model(z, one_hot, truncation)
            arrays[f"images_{index}"] = (
                images[:, :, ::stride, ::stride].numpy())
    np.savez(os.path.join(args.output_dir, "reference.npz"), **arrays)
    with open(os.path.join(args.output_dir, "source.json"), "w") as f:
        json.dump(dict(repository="huggingface/pytorch-pretrained-BigGAN",
                       commit=args.commit or _commit(args.port_dir),
                       torch=torch.__version__,
                       truncations=list(TRUNCATIONS), **SETTINGS), f,
                  indent=2)
        f.write("\n")
    print(f"wrote {args.output_dir}")


if __name__ == "__main__":
    main()
