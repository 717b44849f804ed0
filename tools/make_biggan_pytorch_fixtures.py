r"""Writes the BigGAN-PyTorch test fixtures of the teacher import (run once).

Needs torch and a checkout of BigGAN-PyTorch; neither is a dependency of
ppcd_tf or of its tests, which only read what this writes:

  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
  git clone https://github.com/ajbrock/BigGAN-PyTorch /tmp/BigGAN-PyTorch
  /tmp/torchenv/bin/python tools/make_biggan_pytorch_fixtures.py \
      --biggan_pytorch_dir /tmp/BigGAN-PyTorch \
      --output_dir tests/fixtures/biggan_pytorch_32

Builds BigGAN-PyTorch's own `BigGAN.Generator` and `BigGAN.Discriminator`
at 32x32, G_ch = D_ch = 4, attention at 16, 10 classes, dim_z 20
(hierarchical), shared_dim 8, gives every parameter and buffer random values
(attention gamma and BN statistics included, so that nothing is trivially
zero or one), and writes:

  G_ema.pth  (zip format, as torch.save writes today)
  legacy/G_ema.pth, D.pth  (legacy format, as the 2019 releases were saved)
  reference.npz: z [4, 20], labels [4], images [4, 3, 32, 32] (G in eval
    mode), d_labels [4], d_logits [4, 1] (D on `images`)
  source.json: the BigGAN-PyTorch commit, torch version and arguments.

With --tfhub_v1 it writes instead `tfhub_128_ch8/`: BigGAN-PyTorch's port
of the TF-Hub BigGAN generator (`TFHub/biggan_v1.py`, `Generator128` with
chn 8 and 10 classes) with random weights, its variables under the TF-Hub
module's names and layouts (the inverse of `TFHub/converter.py`'s
`TFHub2Pytorch`: `Generator/GBlock_i/conv0/w/ema_b999900` HWIO, `u0`, `u1`,
`HyperBN*/gamma|beta/w` [z + class, C], `CrossReplicaBN*/accumulated_*`,
`G_Z/G_linear`, `linear/w` [classes, 128], ...) in `variables.npz` (the test
writes them as a TF1 checkpoint), and its images for fixed z and one-hot
classes in `reference.npz` (spectral norms computed as the converted
BigGAN.py model computes them: F.normalize with eps 1e-4).

With --shapes_only it writes instead `imagenet128_ch96_shapes.json`: every
key and shape of the G and D state dicts of the ImageNet 128 model
(launch_BigGAN_bs256x8.sh: G_ch = D_ch = 96, attention at 64, dim_z 120,
hierarchical, shared_dim 128, 1,000 classes), for the structural test.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

SETTINGS = dict(resolution=32, ch=4, attention="16", n_classes=10,
                dim_z=20, shared_dim=8, sn_eps=1e-6, bn_eps=1e-5, seed=0,
                batch=4)


def _randomise(model, generator):
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(
                model.named_buffers()):
            if name.endswith("stored_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator)
                             + 0.5)
            elif name.endswith("gamma"):
                tensor.fill_(0.7)
            elif name.endswith(("accumulation_counter",)) or ".sv" in name:
                continue
            elif name.endswith(("u0",)):
                u = torch.randn(tensor.shape, generator=generator)
                tensor.copy_(u / u.norm())
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator)
                             * 0.2)


EMA = "/ema_b999900"  # the TF-Hub module's EMA variable suffix


def _tfhub_name(key):
    """(TF-Hub variable name, layout change) of a biggan_v1 state-dict key:
    the inverse of converter.py's TFHub2Pytorch.load_generator."""
    to_hwio = (2, 3, 1, 0)   # torch OIHW -> TF HWIO
    swap = (1, 0)            # torch [out, in] -> TF [in, out]
    parts = key.split(".")
    if parts[0] == "GBlock":
        index = int(parts[1])
        block = "Generator/GBlock" + (f"_{index}" if index else "")
        layer = parts[2]
        if layer.startswith("HyperBN"):
            suffix = layer[len("HyperBN"):]
            if parts[3] == "bn":
                stat = {"running_mean": "accumulated_mean",
                        "running_var": "accumulated_var",
                        "num_batches_tracked": "accumulation_counter"}
                return f"{block}/CrossReplicaBN{suffix}/{stat[parts[4]]}", None
            which = "gamma" if parts[3] == "gamma_embed" else "beta"
            base = f"{block}/{layer}/{which}"
        else:
            base = f"{block}/{layer}"
        leaf = parts[-1]
        layout = to_hwio if not layer.startswith("HyperBN") else swap
    elif parts[0] == "attention":
        if parts[1] == "gamma":
            return "Generator/attention/gamma" + EMA, None
        base, leaf, layout = f"Generator/attention/{parts[1]}", parts[-1], \
            to_hwio
    elif parts[0] == "linear":
        return "linear/w" + EMA, swap
    elif parts[0] == "G_linear":
        base, leaf, layout = "Generator/G_Z/G_linear", parts[-1], swap
    elif parts[0] == "colorize":
        base, leaf, layout = "Generator/conv_2d", parts[-1], to_hwio
    elif parts[0] == "ScaledCrossReplicaBN":
        root = "Generator/ScaledCrossReplicaBN"
        return {"weight": (root + "/gamma" + EMA, None),
                "bias": (root + "/beta" + EMA, None),
                "running_mean": (root + "bn/accumulated_mean", None),
                "running_var": (root + "bn/accumulated_var", None),
                "num_batches_tracked": (root + "bn/accumulation_counter",
                                        None)}[parts[1]]
    else:
        raise KeyError(key)
    if leaf == "weight_bar":
        return base + "/w" + EMA, layout
    if leaf == "bias":
        return base + "/b" + EMA, None
    if leaf == "weight_u":
        return base + "/u0", "row"
    if leaf == "weight_v":
        return base + "/u1", "row"
    raise KeyError(key)


def _write_tfhub_v1(biggan_v1, output_dir):
    # biggan_v1's power iteration normalises with v / (|v| + 1e-4); the
    # model its converter produces (BigGAN.py with SN_eps 1e-4, converter.py
    # get_config) with F.normalize, v / max(|v|, 1e-4). Use the latter, the
    # converted model's arithmetic (the two differ by ~3e-4 in the images).
    biggan_v1.l2normalize = lambda v, eps=1e-4: torch.nn.functional.normalize(
        v, dim=0, eps=eps)
    torch.manual_seed(0)
    num_classes, batch = 10, 4
    G = biggan_v1.Generator128(n_class=num_classes, debug=True)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in list(G.named_parameters()) + list(
                G.named_buffers()):
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator)
                             + 0.5)
            elif name.endswith("num_batches_tracked"):
                continue
            elif name.endswith(("weight_u", "weight_v")):
                u = torch.randn(tensor.shape, generator=generator)
                tensor.copy_(u / u.norm())
            elif name == "attention.gamma":
                tensor.fill_(0.7)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator)
                             * 0.2)
    G.eval()
    z = torch.randn(batch, 120, generator=generator)
    labels = torch.tensor([0, 3, 7, 9])
    one_hot = torch.nn.functional.one_hot(labels, num_classes).float()
    variables = {}
    for key, value in G.state_dict().items():
        name, layout = _tfhub_name(key)
        array = value.numpy()
        if layout == "row":
            array = array.reshape(1, -1)
        elif layout is not None:
            array = np.transpose(array, layout)
        variables[name] = array
    with torch.no_grad():
        # (The variables above were taken before this call: biggan_v1 runs
        # its power iteration in place, as the TF-Hub graph does from u0.)
        images = G(z, one_hot)
    path = os.path.join(output_dir, "tfhub_128_ch8")
    os.makedirs(path, exist_ok=True)
    np.savez(os.path.join(path, "variables.npz"), **variables)
    np.savez(os.path.join(path, "reference.npz"), z=z.numpy(),
             labels=labels.numpy(), images=images.numpy())
    print(f"Wrote {path} ({len(variables)} variables)")


def _write_shapes(BigGAN, output_dir):
    common = dict(resolution=128, n_classes=1000, SN_eps=1e-6,
                  skip_init=True, no_optim=True)
    G = BigGAN.Generator(G_ch=96, dim_z=120, G_attn="64", G_shared=True,
                         shared_dim=128, hier=True, **common)
    D = BigGAN.Discriminator(D_ch=96, D_attn="64", D_wide=True, **common)
    shapes = {name: {key: list(value.shape) for key, value in
                     model.state_dict().items()}
              for name, model in (("G", G), ("D", D))}
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "imagenet128_ch96_shapes.json")
    with open(path, "w") as f:
        json.dump(shapes, f, indent=1)
        f.write("\n")
    print(f"Wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--biggan_pytorch_dir", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--shapes_only", action="store_true")
    parser.add_argument("--tfhub_v1", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, args.biggan_pytorch_dir)
    import BigGAN  # noqa: E402 (BigGAN-PyTorch's module)
    if args.shapes_only:
        _write_shapes(BigGAN, args.output_dir)
        return
    if args.tfhub_v1:
        sys.path.insert(0, os.path.join(args.biggan_pytorch_dir, "TFHub"))
        import biggan_v1  # noqa: E402 (BigGAN-PyTorch's TF-Hub port)
        _write_tfhub_v1(biggan_v1, args.output_dir)
        return

    s = SETTINGS
    torch.manual_seed(s["seed"])
    common = dict(resolution=s["resolution"], n_classes=s["n_classes"],
                  SN_eps=s["sn_eps"], skip_init=True, no_optim=True)
    G = BigGAN.Generator(G_ch=s["ch"], dim_z=s["dim_z"], G_attn=s["attention"],
                         G_shared=True, shared_dim=s["shared_dim"], hier=True,
                         BN_eps=s["bn_eps"], **common)
    D = BigGAN.Discriminator(D_ch=s["ch"], D_attn=s["attention"], D_wide=True,
                             **common)
    generator = torch.Generator().manual_seed(s["seed"])
    _randomise(G, generator)
    _randomise(D, generator)
    G.eval()
    D.eval()
    z = torch.randn(s["batch"], s["dim_z"], generator=generator)
    labels = torch.tensor([0, 3, 7, 9])
    with torch.no_grad():
        images = G(z, G.shared(labels))
        d_labels = torch.tensor([1, 3, 5, 9])
        d_logits = D(images, d_labels)
    os.makedirs(os.path.join(args.output_dir, "legacy"), exist_ok=True)
    torch.save(G.state_dict(), os.path.join(args.output_dir, "G_ema.pth"))
    torch.save(G.state_dict(), os.path.join(args.output_dir, "legacy",
                                            "G_ema.pth"),
               _use_new_zipfile_serialization=False)
    torch.save(D.state_dict(), os.path.join(args.output_dir, "legacy",
                                            "D.pth"),
               _use_new_zipfile_serialization=False)
    np.savez(os.path.join(args.output_dir, "reference.npz"),
             z=z.numpy(), labels=labels.numpy(), images=images.numpy(),
             d_labels=d_labels.numpy(), d_logits=d_logits.numpy())
    commit = subprocess.run(["git", "-C", args.biggan_pytorch_dir,
                             "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    with open(os.path.join(args.output_dir, "source.json"), "w") as f:
        json.dump(dict(SETTINGS, biggan_pytorch_commit=commit,
                       torch=torch.__version__,
                       command=" ".join(sys.argv)), f, indent=2)
        f.write("\n")
    print(f"Wrote {args.output_dir}")


if __name__ == "__main__":
    main()
