"""FID, KID, Inception Score, intra-FID and class accuracy, in float64 NumPy.

All metrics take precomputed activations (features of a classifier such as
Inception-v3) or logits; running the feature network is the caller's job.
Runtime code must not depend on tensorflow-gan (it does not import on
TF >= 2.16); the tests cross-check every number here against
tensorflow-gan's reference functions and against a NumPy/SciPy reference.

Conventions (chosen to match tensorflow-gan 2.1.0, `tfgan.eval`):

* Covariances are the unbiased sample covariance (ddof=1), as in
  `frechet_classifier_distance_from_activations` (which rescales
  `tfp.stats.covariance` by n / (n - 1)) and `np.cov`.
* FID needs tr((sigma1 sigma2)^(1/2)). It is computed as the nuclear norm
  (sum of singular values) of sigma1^(1/2) sigma2^(1/2), where each PSD square
  root comes from a symmetric eigendecomposition with eigenvalues below the
  round-off level (d * eps * max eigenvalue) set to zero. Since
  sigma1^(1/2) sigma2 sigma1^(1/2) = (A B)(A B)^T with A = sigma1^(1/2),
  B = sigma2^(1/2), and sigma1 sigma2 has the same nonzero spectrum, the
  singular values of A B are exactly the square roots of the eigenvalues of
  sigma1 sigma2. Taking singular values directly (instead of eigenvalues of
  the product, then square roots) avoids sqrt-amplified round-off, never
  produces complex values, and stays finite on rank-deficient covariances
  (n <= d), where `scipy.linalg.sqrtm(sigma1 @ sigma2)` is ill-conditioned.
  Cost: two d x d eigendecompositions and one SVD (about 45 s at d = 2048 on
  2 CPU cores). `fid_from_activations` with n_real, n_fake <= d (typical for
  per-class FID) skips the covariances altogether: tr((sigma1 sigma2)^(1/2))
  is then the nuclear norm of the n_real x n_fake matrix of centred,
  (n - 1)^(-1/2)-scaled cross products, which is exact and cheap.
* KID is the unbiased MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018). With the default
  arguments it is tensorflow-gan's block estimator: the samples are split,
  in order, into ceil(max(n_real, n_fake) / 1024) contiguous blocks of
  near-equal size and the per-block estimates are averaged. Like tfgan this
  assumes both sets are in random order. Random subsets with a fixed size
  (the original paper's / torch-fidelity's protocol) are available with
  `subset_size`.
* The Inception Score is exp(E_x KL(p(y|x) || p(y))) in float64; with
  `num_splits=1` it equals `tfgan.eval.classifier_score_from_logits`.
  With several splits it follows Salimans et al. / BigGAN-PyTorch: equal
  contiguous splits of n // num_splits samples (the remainder is dropped),
  mean and population std (ddof=0) of the per-split scores.

Every reported metric should record how it was computed (feature network,
input resize, number of samples, source of the real statistics,
truncation); `save_statistics` stores such metadata next to cached real
statistics.
"""

import io
import json
import math
import os
import zipfile
from typing import Dict
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from ppcd_tf import files

# tensorflow-gan's default KID block size (`max_block_size`).
KID_MAX_BLOCK_SIZE = 1024
# Number of random subsets when `subset_size` is given without `num_subsets`
# (torch-fidelity / clean-fid use 100).
KID_DEFAULT_NUM_RANDOM_SUBSETS = 100
# Elements per kernel-matrix chunk (32 MiB of float64) in the KID sums.
_KERNEL_CHUNK_ELEMENTS = 1 << 22
_STATS_FORMAT_VERSION = 1


class KIDResult(NamedTuple):
    """KID estimate: `mean` over subsets and the sample `std` (ddof=1) of the
    per-subset estimates (NaN with a single subset). tensorflow-gan's second
    output (`kernel_classifier_distance_and_std_from_activations`) is the
    standard error, `std / sqrt(num_subsets)`."""
    mean: float
    std: float


class ScoreResult(NamedTuple):
    """Inception Score: `mean` and population `std` (ddof=0) over splits."""
    mean: float
    std: float


class IntraFIDResult(NamedTuple):
    """Per-class FID.

    Attributes:
      per_class: {class_id: FID} for every class that was evaluated.
      mean: mean of `per_class` values (NaN if no class was evaluated).
      skipped: {class_id: reason} for classes with < 2 samples on a side.
    """
    per_class: Dict[int, float]
    mean: float
    skipped: Dict[int, str]


# ----------------------------------------------------------------------------
# Input validation helpers.
# ----------------------------------------------------------------------------

def _as_float64_matrix(x, name, min_rows=1):
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numeric, got {type(x)}: {e}") from e
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D [num_samples, num_features], got shape "
            f"{arr.shape}.")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has no features (shape {arr.shape}).")
    if arr.shape[0] < min_rows:
        raise ValueError(
            f"{name} needs at least {min_rows} samples, got {arr.shape[0]}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf.")
    return arr


def _check_same_features(a, b, name_a, name_b):
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"Feature dimensions differ: {name_a} has {a.shape[1]}, "
            f"{name_b} has {b.shape[1]}.")


def _check_statistics(mu, sigma, suffix=""):
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or mu.shape[0] < 1:
        raise ValueError(f"mu{suffix} must be 1-D [d], got shape {mu.shape}.")
    d = mu.shape[0]
    if sigma.shape != (d, d):
        raise ValueError(
            f"sigma{suffix} must be [d, d] = [{d}, {d}] to match mu{suffix}, "
            f"got shape {sigma.shape}.")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise ValueError(f"mu{suffix} / sigma{suffix} contain NaN or Inf.")
    return mu, sigma


def _as_int_vector(x, name):
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer class ids, got shape "
                         f"{arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype, got "
                         f"{arr.dtype}.")
    return arr.astype(np.int64)


# ----------------------------------------------------------------------------
# Frechet distance.
# ----------------------------------------------------------------------------

def _psd_sqrt(sigma):
    """Symmetric PSD square root; eigenvalues at round-off level -> 0."""
    sym = 0.5 * (sigma + sigma.T)
    w, v = np.linalg.eigh(sym)
    tol = max(float(w[-1]), 0.0) * sym.shape[0] * np.finfo(np.float64).eps
    w = np.where(w > tol, w, 0.0)
    return (v * np.sqrt(w)) @ v.T


def trace_sqrt_product(sigma1, sigma2):
    """tr((sigma1 sigma2)^(1/2)) for PSD matrices, as ||s1^(1/2) s2^(1/2)||_*.

    Args:
      sigma1: [d, d] symmetric PSD matrix.
      sigma2: [d, d] symmetric PSD matrix.

    Returns:
      float, the sum of singular values of sigma1^(1/2) @ sigma2^(1/2).

    Raises:
      ValueError: on non-square or mismatched shapes or non-finite values.
    """
    s1 = np.asarray(sigma1, dtype=np.float64)
    s2 = np.asarray(sigma2, dtype=np.float64)
    if s1.ndim != 2 or s1.shape[0] != s1.shape[1] or s1.shape != s2.shape:
        raise ValueError(f"sigma1 and sigma2 must be square and of equal "
                         f"shape, got {s1.shape} and {s2.shape}.")
    if not (np.all(np.isfinite(s1)) and np.all(np.isfinite(s2))):
        raise ValueError("sigma1 / sigma2 contain NaN or Inf.")
    prod = _psd_sqrt(s1) @ _psd_sqrt(s2)
    return float(np.sum(np.linalg.svd(prod, compute_uv=False)))


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), float64.

    ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)),
    with the trace term from `trace_sqrt_product` (see the module docstring).
    The result is not clipped: round-off can make it slightly negative
    (~1e-12) for identical inputs.

    Args:
      mu1: [d] mean.
      sigma1: [d, d] covariance (symmetric PSD).
      mu2: [d] mean.
      sigma2: [d, d] covariance (symmetric PSD).

    Returns:
      float, the Frechet distance.

    Raises:
      ValueError: if shapes are inconsistent, dimensions differ, or values
        are not finite.
    """
    mu1, sigma1 = _check_statistics(mu1, sigma1, "1")
    mu2, sigma2 = _check_statistics(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"Feature dimensions differ: mu1 has {mu1.shape[0]}, "
                         f"mu2 has {mu2.shape[0]}.")
    diff = mu1 - mu2
    covariance_term = (np.trace(sigma1) + np.trace(sigma2)
                       - 2.0 * trace_sqrt_product(sigma1, sigma2))
    return float(diff @ diff + covariance_term)


def activation_statistics(activations):
    """Mean and unbiased covariance (ddof=1) of activations, in float64.

    Matches tfgan's FID (n / (n - 1) * tfp.stats.covariance) and `np.cov`.

    Args:
      activations: [n, d] array-like (NumPy array or tf.Tensor), n >= 2.

    Returns:
      (mu [d], sigma [d, d]) float64 arrays.

    Raises:
      ValueError: if not 2-D, fewer than 2 samples, or non-finite values.
    """
    acts = _as_float64_matrix(activations, "activations", min_rows=2)
    mu = acts.mean(axis=0)
    centered = acts - mu
    sigma = centered.T @ centered / (acts.shape[0] - 1)
    return mu, sigma


def fid_from_activations(real, fake):
    """FID between two sets of activations (float64).

    Args:
      real: [n_real, d] activations, n_real >= 2.
      fake: [n_fake, d] activations, n_fake >= 2.

    Returns:
      float, the Frechet distance of the two sample Gaussians.

    Raises:
      ValueError: on bad shapes, mismatched d, < 2 samples, or NaN/Inf.
    """
    real = _as_float64_matrix(real, "real", min_rows=2)
    fake = _as_float64_matrix(fake, "fake", min_rows=2)
    _check_same_features(real, fake, "real", "fake")
    if max(real.shape[0], fake.shape[0]) <= real.shape[1]:
        return _fid_from_data_factors(real, fake)
    return frechet_distance(*activation_statistics(real),
                            *activation_statistics(fake))


def _fid_from_data_factors(real, fake):
    """FID without forming covariances, for n <= d (e.g. per-class FID).

    With P = (real - mu1) / sqrt(n1 - 1), so that sigma1 = P^T P, and Q
    likewise, the nonzero eigenvalues of sigma1 sigma2 = P^T P Q^T Q are
    those of (P Q^T)(P Q^T)^T, so tr((sigma1 sigma2)^(1/2)) = ||P Q^T||_*:
    one SVD of an n1 x n2 matrix instead of d x d decompositions.
    """
    mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
    p = (real - mu1) / np.sqrt(real.shape[0] - 1)
    q = (fake - mu2) / np.sqrt(fake.shape[0] - 1)
    tr_sqrt = float(np.sum(np.linalg.svd(p @ q.T, compute_uv=False)))
    diff = mu1 - mu2
    return float(diff @ diff + np.sum(p * p) + np.sum(q * q) - 2.0 * tr_sqrt)


# ----------------------------------------------------------------------------
# Kernel Inception Distance.
# ----------------------------------------------------------------------------

def _poly_kernel_sum(x, y):
    """sum_ij (x_i.y_j / d + 1)^3, in row chunks of bounded memory."""
    d = x.shape[1]
    rows = max(1, _KERNEL_CHUNK_ELEMENTS // max(1, y.shape[0]))
    total = 0.0
    for start in range(0, x.shape[0], rows):
        k = x[start:start + rows] @ y.T / d + 1.0
        total += float(np.sum(k * k * k))
    return total


def _poly_kernel_diag_sum(x):
    d = x.shape[1]
    k = np.einsum("ij,ij->i", x, x) / d + 1.0
    return float(np.sum(k * k * k))


def _mmd2_unbiased(x, y):
    """Unbiased MMD^2 (cubic polynomial kernel) of two sample sets."""
    m, n = x.shape[0], y.shape[0]
    k_xx = (_poly_kernel_sum(x, x) - _poly_kernel_diag_sum(x)) / (m * (m - 1))
    k_yy = (_poly_kernel_sum(y, y) - _poly_kernel_diag_sum(y)) / (n * (n - 1))
    k_xy = _poly_kernel_sum(x, y) / (m * n)
    return k_xx + k_yy - 2.0 * k_xy


def _block_bounds(n, num_blocks):
    """tfgan's split: n // k per block, the last n % k blocks get one more."""
    base = n // num_blocks
    plus_one = n - base * num_blocks
    sizes = [base] * (num_blocks - plus_one) + [base + 1] * plus_one
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return list(zip(bounds[:-1], bounds[1:]))


def kid_from_activations(real, fake, num_subsets=None, subset_size=None,
                         seed=0, max_block_size=KID_MAX_BLOCK_SIZE):
    """Kernel Inception Distance (unbiased MMD^2, kernel (x.y/d + 1)^3).

    Modes:
      * `subset_size=None` (default): tensorflow-gan's deterministic block
        estimator. The sets are split, in order, into `num_subsets`
        contiguous blocks of near-equal size (tfgan's split rule); with
        `num_subsets=None` the number of blocks is
        ceil(max(n_real, n_fake) / max_block_size), exactly as
        `tfgan.eval.kernel_classifier_distance_and_std_from_activations`
        with its default `max_block_size=1024`. `num_subsets=1` uses all
        samples in one block. Assumes both sets are in random order.
      * `subset_size=s`: `num_subsets` (default 100) random subsets of `s`
        samples from each set, each drawn without replacement with
        `np.random.default_rng(seed)` (Binkowski et al. / torch-fidelity).

    Kernel sums are accumulated in chunks, so one block over all of a large
    set does not materialise an n x n matrix.

    Args:
      real: [n_real, d] activations.
      fake: [n_fake, d] activations.
      num_subsets: number of blocks / random subsets (see above), >= 1.
      subset_size: None, or the size of each random subset (2 <= s <=
        min(n_real, n_fake)).
      seed: seed for random subsets (ignored in block mode).
      max_block_size: block-size cap used when both `num_subsets` and
        `subset_size` are None.

    Returns:
      KIDResult(mean, std): mean of the per-subset estimates and their sample
      std (ddof=1; NaN with one subset). tfgan's second output is the
      standard error std / sqrt(num_subsets); torch-fidelity reports the
      ddof=0 std.

    Raises:
      ValueError: on bad shapes, mismatched d, NaN/Inf, or subsets/blocks
        with fewer than 2 samples per side.
    """
    real = _as_float64_matrix(real, "real", min_rows=2)
    fake = _as_float64_matrix(fake, "fake", min_rows=2)
    _check_same_features(real, fake, "real", "fake")
    n_r, n_g = real.shape[0], fake.shape[0]
    if num_subsets is not None and int(num_subsets) < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}.")

    estimates = []
    if subset_size is None:
        if num_subsets is None:
            if int(max_block_size) < 2:
                raise ValueError(
                    f"max_block_size must be >= 2, got {max_block_size}.")
            num_blocks = math.ceil(max(n_r, n_g) / int(max_block_size))
        else:
            num_blocks = int(num_subsets)
        if n_r // num_blocks < 2 or n_g // num_blocks < 2:
            raise ValueError(
                f"KID with {num_blocks} blocks needs >= 2 samples per block "
                f"on each side; got n_real={n_r}, n_fake={n_g}.")
        for (r0, r1), (g0, g1) in zip(_block_bounds(n_r, num_blocks),
                                      _block_bounds(n_g, num_blocks)):
            estimates.append(_mmd2_unbiased(real[r0:r1], fake[g0:g1]))
    else:
        subset_size = int(subset_size)
        if subset_size < 2 or subset_size > min(n_r, n_g):
            raise ValueError(
                f"subset_size must be in [2, min(n_real, n_fake)] = "
                f"[2, {min(n_r, n_g)}], got {subset_size}.")
        k = (KID_DEFAULT_NUM_RANDOM_SUBSETS if num_subsets is None
             else int(num_subsets))
        rng = np.random.default_rng(seed)
        for _ in range(k):
            ir = rng.choice(n_r, subset_size, replace=False)
            ig = rng.choice(n_g, subset_size, replace=False)
            estimates.append(_mmd2_unbiased(real[ir], fake[ig]))

    estimates = np.asarray(estimates, dtype=np.float64)
    std = (float(np.std(estimates, ddof=1)) if estimates.size > 1
           else float("nan"))
    return KIDResult(float(np.mean(estimates)), std)


# ----------------------------------------------------------------------------
# Inception Score.
# ----------------------------------------------------------------------------

def _log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def _score_of_split(logits):
    log_p = _log_softmax(logits)
    p = np.exp(log_p)
    # log q_j = log mean_i p_ij, via log-sum-exp so q_j = 0 cannot give NaN.
    col_max = log_p.max(axis=0, keepdims=True)
    log_q = (col_max + np.log(np.sum(np.exp(log_p - col_max), axis=0,
                                     keepdims=True))
             - np.log(logits.shape[0]))
    kl = np.sum(p * (log_p - log_q), axis=1)
    return float(np.exp(np.mean(kl)))


def inception_score_from_logits(logits, num_splits=1):
    """Inception Score exp(E_x KL(p(y|x) || p(y))) from classifier logits.

    Args:
      logits: [n, num_classes] unnormalised logits (float64 internally).
      num_splits: number of equal contiguous splits of n // num_splits
        samples (remainder dropped, as in Salimans et al. / BigGAN-PyTorch);
        1 uses all samples and equals tfgan's `classifier_score_from_logits`.

    Returns:
      ScoreResult(mean, std) over splits (std is ddof=0; 0.0 for one split).

    Raises:
      ValueError: on non-2-D logits, NaN/Inf, num_splits < 1, or fewer than
        one sample per split.
    """
    logits = _as_float64_matrix(logits, "logits", min_rows=1)
    num_splits = int(num_splits)
    if num_splits < 1:
        raise ValueError(f"num_splits must be >= 1, got {num_splits}.")
    per_split = logits.shape[0] // num_splits
    if per_split < 1:
        raise ValueError(f"{logits.shape[0]} samples cannot fill "
                         f"{num_splits} splits.")
    scores = np.array([
        _score_of_split(logits[i * per_split:(i + 1) * per_split])
        for i in range(num_splits)])
    return ScoreResult(float(np.mean(scores)), float(np.std(scores)))


# ----------------------------------------------------------------------------
# Class-conditional metrics.
# ----------------------------------------------------------------------------

def intra_fid(real_acts, real_labels, fake_acts, fake_labels, classes=None):
    """Per-class FID (intra-FID) of a class-conditional generator.

    Each class's FID compares the real and generated activations carrying
    that label. Classes with fewer than 2 samples on either side are skipped
    and reported. With fewer samples than features per class the
    covariances are rank-deficient; the FID stays finite but is strongly
    biased, so compare only numbers computed with the same sample counts.

    Args:
      real_acts: [n_real, d] activations of real images.
      real_labels: [n_real] integer class ids.
      fake_acts: [n_fake, d] activations of generated images.
      fake_labels: [n_fake] integer class ids the images were generated for.
      classes: iterable of class ids to evaluate; None means every id present
        in either label vector.

    Returns:
      IntraFIDResult(per_class={class: FID}, mean=mean over evaluated
      classes (NaN if none), skipped={class: reason}).

    Raises:
      ValueError: on bad shapes, mismatched d or label lengths, non-integer
        labels, or NaN/Inf.
    """
    real_acts = _as_float64_matrix(real_acts, "real_acts")
    fake_acts = _as_float64_matrix(fake_acts, "fake_acts")
    _check_same_features(real_acts, fake_acts, "real_acts", "fake_acts")
    real_labels = _as_int_vector(real_labels, "real_labels")
    fake_labels = _as_int_vector(fake_labels, "fake_labels")
    if real_labels.shape[0] != real_acts.shape[0]:
        raise ValueError(f"real_labels has {real_labels.shape[0]} entries, "
                         f"real_acts has {real_acts.shape[0]} rows.")
    if fake_labels.shape[0] != fake_acts.shape[0]:
        raise ValueError(f"fake_labels has {fake_labels.shape[0]} entries, "
                         f"fake_acts has {fake_acts.shape[0]} rows.")
    if classes is None:
        classes = np.union1d(real_labels, fake_labels)
    classes = [int(c) for c in classes]

    per_class, skipped = {}, {}
    for c in classes:
        real_c = real_acts[real_labels == c]
        fake_c = fake_acts[fake_labels == c]
        if real_c.shape[0] < 2 or fake_c.shape[0] < 2:
            skipped[c] = (f"{real_c.shape[0]} real / {fake_c.shape[0]} fake "
                          f"samples (need >= 2 each)")
            continue
        per_class[c] = fid_from_activations(real_c, fake_c)
    mean = (float(np.mean(list(per_class.values()))) if per_class
            else float("nan"))
    return IntraFIDResult(per_class, mean, skipped)


def class_accuracy(logits_or_predictions, labels):
    """Fraction of samples classified as their label (e.g. the class a
    generated image was conditioned on).

    Args:
      logits_or_predictions: [n, num_classes] logits/probabilities (argmax is
        taken) or [n] integer predicted class ids.
      labels: [n] integer class ids.

    Returns:
      float in [0, 1].

    Raises:
      ValueError: on bad ranks, non-integer 1-D predictions or labels,
        mismatched lengths, or no samples.
    """
    preds = np.asarray(logits_or_predictions)
    if preds.ndim == 2:
        if preds.shape[1] < 1:
            raise ValueError("logits have no classes.")
        preds = np.argmax(preds, axis=1)
    elif preds.ndim == 1:
        preds = _as_int_vector(preds, "predictions")
    else:
        raise ValueError(f"logits_or_predictions must be [n, classes] or [n], "
                         f"got shape {preds.shape}.")
    labels = _as_int_vector(labels, "labels")
    if preds.shape[0] != labels.shape[0]:
        raise ValueError(f"{preds.shape[0]} predictions but "
                         f"{labels.shape[0]} labels.")
    if labels.shape[0] == 0:
        raise ValueError("class_accuracy needs at least one sample.")
    return float(np.mean(preds == labels))


# ----------------------------------------------------------------------------
# Cached statistics.
# ----------------------------------------------------------------------------

def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def save_statistics(path, mu, sigma, meta=None):
    """Writes (mu, sigma, meta) to an .npz file atomically (tmp + rename).

    The file holds float64 `mu`, `sigma`, a JSON string `meta` and a
    `format_version`; it loads with `allow_pickle=False`. Any tf.io.gfile
    path works (the rename is atomic on local file systems).

    Args:
      path: destination file (written exactly there; no suffix is added).
      mu: [d] mean.
      sigma: [d, d] covariance.
      meta: JSON-serialisable dict describing how the statistics were
        computed (feature network, resize, number of samples, dataset
        split, ...). NumPy scalars/arrays are converted.

    Raises:
      ValueError: on inconsistent shapes, NaN/Inf, or unserialisable meta.
    """
    mu, sigma = _check_statistics(mu, sigma)
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a dict, got {type(meta).__name__}.")
    try:
        meta_json = json.dumps(meta, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as e:
        raise ValueError(f"meta is not JSON serialisable: {e}") from e
    buf = io.BytesIO()
    np.savez(buf, mu=mu, sigma=sigma, meta=np.array(meta_json),
             format_version=np.array(_STATS_FORMAT_VERSION))
    files.write_bytes(os.fspath(path), buf.getvalue())


def load_statistics(path):
    """Reads statistics written by `save_statistics`.

    Args:
      path: file written by `save_statistics`.

    Returns:
      (mu [d] float64, sigma [d, d] float64, meta dict).

    Raises:
      ValueError: if the file lacks the expected arrays, has an unknown
        format version, or holds inconsistent shapes.
    """
    with tf.io.gfile.GFile(os.fspath(path), "rb") as f:
        data = f.read()
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            missing = {"mu", "sigma", "meta", "format_version"} - set(npz.files)
            if missing:
                raise ValueError(f"{path} is not a statistics file: missing "
                                 f"{sorted(missing)}.")
            version = int(npz["format_version"])
            mu, sigma = npz["mu"], npz["sigma"]
            meta = json.loads(str(npz["meta"]))
    except (OSError, EOFError, zipfile.BadZipFile) as e:  # not npz/truncated
        raise ValueError(f"{path} is not a readable .npz file: {e}") from e
    if version != _STATS_FORMAT_VERSION:
        raise ValueError(f"{path} has statistics format version {version}; "
                         f"this code reads version {_STATS_FORMAT_VERSION}.")
    mu, sigma = _check_statistics(mu, sigma)
    return mu, sigma, meta


__all__ = [
    "KIDResult", "ScoreResult", "IntraFIDResult", "trace_sqrt_product",
    "frechet_distance", "activation_statistics", "fid_from_activations",
    "kid_from_activations", "inception_score_from_logits", "intra_fid",
    "class_accuracy", "save_statistics", "load_statistics",
]
