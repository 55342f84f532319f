"""Recurrent layers: a cell run over time, stacked and optionally bidirectional.

`LSTM`, `GRU` and `RNN` are drop-in for `torch.nn.LSTM`/`GRU`/`RNN`: the same constructor
arguments in the same positions (LSTM's ``proj_size`` too), the same call ``layer(input, hx)``,
the same parameter names (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
``bias_hh_l{k}``, ``weight_hr_l{k}``, ``_reverse`` for the backward direction) and gate order,
so a standard layer's `state_dict` loads into the torch module and back. unroll's own options
(LSTM variants, ``impl``) are keyword-only; ``state=`` is an alias of ``hx`` kept for older
callers. Every layer runs one of three implementations (a fourth while exporting to ONNX),
chosen in one place, `_RNNBase.implementation`:

  reference  a Python loop over time calling the cell's step function (`unroll.nn.cells`), with the
             input projection for all T steps done as one GEMM. The specification.
  fused      LSTM: the hand-written sequence kernel `unroll.nn.kernels.lstm_fused` (all variants,
             no projection: with ``proj_size`` it runs as auto, because the kernel's time loops
             recur on the unprojected h).
             GRU/RNN: PyTorch's fused kernels (there are no GRU/RNN variants to fuse).
  auto       PyTorch's fused kernels (`torch._VF.lstm/gru/rnn_*`: cuDNN on GPU, oneDNN/native on
             CPU) whenever the math is identical: every GRU/RNN and the standard LSTM, with or
             without ``proj_size`` (a non-zero forget_bias is folded into ``bias_ih`` at call
             time, never stored). LSTM variants (peephole/coupled) use the fused kernel, or the
             reference with ``proj_size``.

Data layout (time-major inside, as cuDNN)::

    x  (T, B, C)  or (B, T, C) with batch_first      y  (T, B, D·R)  or (B, T, D·R)
    hx: h (L·D, B, R) [and c (L·D, B, H) for LSTM], never batch-first, k = layer·D + direction
    R = proj_size if set (LSTM), else H

Variable lengths: pass a PackedSequence (a PackedSequence comes back) or ``lengths`` (B,) with
padded x (any order, as enforce_sorted=False). Padded steps never change the state; outputs there
are zero; the reverse direction starts at each sequence's own last step; the final state is the
state after each sequence's last valid step.

``layer.implementation`` says what actually runs ("torch", "fused", "reference", or "onnx" while
torch.onnx.export records).

Tracing, compiling, transforming (`tests/test_compat.py` holds each to eager numbers, the
reference loop, torch.nn or onnxruntime):
  torch.compile  every implementation runs. The LSTM's `torch._VF` call is left to eager (a
                 graph break, which is how `torch.nn.LSTM` itself runs under torch.compile:
                 dynamo does not trace it, and on CPU its lowering fails when the weights need
                 gradients). GRU/RNN's, the fused LSTM (custom ops, compiled loops loaded when
                 the layer is built) and the reference are traced, with ``fullgraph=True`` too.
  torch.onnx.export  (either exporter) one ONNX LSTM/GRU/RNN node per layer and direction
                 (`unroll.nn.kernels.onnx_export`), whatever ``impl`` says: every LSTM variant
                 and projection maps onto ONNX's LSTM exactly; the T axis may be dynamic, and
                 ``lengths`` become the nodes' sequence_lens.
  jit.trace, torch.export  portable ops: torch's op where the math is torch's (any T), else
                 the reference loop, unrolled over the example's T (a trace warns; torch.export
                 refuses a dynamic T). jit.trace + save + load round-trips.
  torch.jit.script  compiles torch.nn's module on the same parameters (`to_torch`) where the
                 math is torch's; an LSTM variant is refused in one line naming jit.trace,
                 torch.export and torch.compile.
  higher-order gradients, torch.func  every implementation: the fused LSTM's backward is
                 first-order, so a differentiated backward (create_graph=True, torch.func)
                 runs through the reference cell. vmap and forward mode work where the fused
                 kernel or the reference runs; torch's kernel behaves as torch.nn's (no forward
                 mode on CPU, no vmap batching rule).

torch.nn's types: a layer is not an instance of `torch.nn.LSTM`/`GRU`/`RNN`. Subclassing
them would make dynamo graph-break on the whole layer (it refuses every nn.LSTM/GRU/RNN
instance, `torch._dynamo.config.allow_rnn`), losing the compiled fused and reference paths,
and would not help torch.ao.quantization, which swaps modules by exact type; torch.nn.RNNBase's
list-keeping machinery would also need overriding. `to_torch()` returns the torch.nn module
on the same parameters where the math is torch's; torch.ao.quantization warns that it leaves
ours float (`TorchTwin`). ``_flat_weights``/``_flat_weights_names``, ``all_weights``, ``mode``
and ``proj_size`` are torch.nn's.

CUDA-graph capture: the fixed-length forward (no lengths, no PackedSequence) does no host sync
and no value-dependent Python branching, and allocates no parameters; variable lengths read
the lengths on the host (as `pack_padded_sequence` does). Weights are read with getattr, so a
parametrization (e.g. weight drop on ``weight_hh_l0``) is honoured by every implementation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from unroll.nn.cells.base import TorchTwin, check_cell_state, check_like, hx_or_state
from unroll.nn.cells.gru import gru_step
from unroll.nn.cells.lstm import (
    check_probability,
    check_zoneout,
    input_projection,
    lstm_step,
    variant_repr,
)
from unroll.nn.cells.rnn import NONLINEARITIES, rnn_step
from unroll.nn.kernels.lstm_fused import lstm_sequence, time_loops
from unroll.nn.kernels.onnx_export import hidden_state_onnx, lstm_onnx

IMPLS = ("auto", "reference", "fused")
Lengths = Tensor | Sequence[int]


def exporting() -> bool:
    """True while torch.jit.trace, torch.onnx.export (either exporter) or torch.export records
    the forward: then only ops with a portable form may run (no custom ops or autograd
    Functions, which the TorchScript exporter would bake in as constants)."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def exporting_to_onnx() -> bool:
    """True while torch.onnx.export (either exporter) records the forward."""
    return exporting() and torch.onnx.is_in_onnx_export()


class _RNNBase(TorchTwin, nn.Module):
    """Parameters, validation, stacking, directions and the implementation switch.

    Subclasses set `_gates` (gate blocks per weight) and `mode` (torch's name: "LSTM", "GRU",
    "RNN_TANH", "RNN_RELU"), and implement `_torch_call` and `_step` (and the LSTM
    `_fused_direction`) for one layer and direction. Constructor arguments are torch.nn's, in
    torch.nn's order; ``proj_size`` is LSTM-only (0 for the others, as in torch).
    """

    _gates: int
    _has_cell_state = False
    mode: str
    recurrent_dropout_mode = "gal"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        impl: str = "auto",
        weight_drop: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.weight_drop = check_probability(name, "weight_drop", weight_drop)
        self.recurrent_dropout = check_probability(name, "recurrent_dropout", recurrent_dropout)
        self.zoneout = tuple(zoneout)  # (p_c, p_h), checked by the subclass
        for arg, value, least in (
            ("input_size", input_size, 1),
            ("hidden_size", hidden_size, 1),
            ("num_layers", num_layers, 1),
            ("proj_size", proj_size, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                what = "a positive int" if least else "an int >= 0"
                raise ValueError(f"{name}: expected {arg} to be {what}, got {value!r}")
        if proj_size >= hidden_size:
            raise ValueError(
                f"{name}: expected proj_size < hidden_size ({hidden_size}), got {proj_size}"
            )
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout <= 1.0):
            raise ValueError(f"{name}: expected dropout in [0, 1], got {dropout!r}")
        if impl not in IMPLS:
            raise ValueError(f"{name}: expected impl one of {IMPLS}, got {impl!r}")
        if dropout > 0 and num_layers == 1:  # torch.nn's words, torch.nn's category
            warnings.warn(
                "dropout option adds dropout after all but last "
                "recurrent layer, so non-zero dropout expects "
                f"num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=3,
            )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size, self.impl = bidirectional, proj_size, impl
        self.num_directions = 2 if bidirectional else 1
        kw = {"device": device, "dtype": dtype}
        G, R = self._gates * hidden_size, self._output_size
        # Parameter names per layer/direction, in registration (= state_dict) order.
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else R * self.num_directions
            for direction in range(self.num_directions):
                sfx = self._suffix(layer, direction)
                shapes = {"weight_ih": (G, in_size), "weight_hh": (G, R)}
                if bias:
                    shapes.update(bias_ih=(G,), bias_hh=(G,))
                shapes.update(self._extra_parameters())
                for pname, shape in shapes.items():
                    self.register_parameter(pname + sfx, nn.Parameter(torch.empty(shape, **kw)))
                self._all_weights.append([pname + sfx for pname in shapes])

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    @property
    def _output_size(self) -> int:
        """R: the size of h (and of each direction's output), proj_size when projecting."""
        return self.proj_size or self.hidden_size

    def _extra_parameters(self) -> dict[str, tuple[int, ...]]:
        """Hook: shapes of the parameters after the biases, by name (LSTM: weight_hr,
        peepholes)."""
        return {}

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """The parameters per layer/direction in torch.nn's order (as `torch.nn.RNNBase`)."""
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def reset_parameters(self) -> None:
        """Uniform(-1/√H, 1/√H) for every parameter, as PyTorch initialises its RNNs."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)
        self.flatten_parameters()  # built with device="cuda": one cuDNN buffer, as after .to()

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:  # where torch.nn puts it
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.impl != "auto":
            s += f", impl={self.impl!r}"
        return s

    # --- regularisers: what is drawn once per forward (per sequence) ---------------------------
    def _dropping(self) -> bool:
        """True when a dropout mask (weight drop, recurrent dropout) is drawn: in training."""
        return self.training and bool(self.weight_drop or self.recurrent_dropout)

    def _plan(self, k: int, x: Tensor) -> dict:
        """What layer/direction k uses for this forward over x (T, B, ·), drawn ONCE here (the
        global RNG, as F.dropout: reproducible under torch.manual_seed and across a resume,
        whose checkpoint holds the RNG state), in this order, per k:

          w_hh     W_hh, DropConnect'ed in training (weight drop, Merity et al. 2018: one mask
                   on the weight per forward, shared by the batch, inverted scaling)
          mask_h   (B, R) Gal & Ghahramani 2016's mask on h_{t-1} (mode "gal"), or None
          mask_g   (B, H) Semeniuta et al. 2016's mask on the cell update (mode "semeniuta")
          keep_c, keep_h   zoneout's z (Krueger et al. 2017): (T, B, H) / (T, B, R) Bernoulli
                   in training, the float p at eval, None when off
        """
        T, B = x.shape[0], x.shape[1]
        w_hh = self._get("weight_hh", k)
        if self.training and self.weight_drop:
            w_hh = F.dropout(w_hh, self.weight_drop, training=True)
        plan = {"w_hh": w_hh, "mask_h": None, "mask_g": None, "keep_c": None, "keep_h": None}
        p = self.recurrent_dropout
        if self.training and p:
            key = "mask_g" if self.recurrent_dropout_mode == "semeniuta" else "mask_h"
            size = self.hidden_size if key == "mask_g" else self._output_size
            m = x.new_empty(B, size).bernoulli_(1 - p).div_(1 - p)  # inverted dropout
            plan[key] = m
        for key, prob, size in (
            ("keep_c", self.zoneout[0], self.hidden_size),
            ("keep_h", self.zoneout[1], self._output_size),
        ):
            if prob:
                plan[key] = x.new_empty(T, B, size).bernoulli_(prob) if self.training else prob
        return plan

    def _call_flat_weights(self) -> list[Tensor]:
        """`_flat_weights` for torch's kernel in this call: W_hh DropConnect'ed in training
        with weight drop (drawn in `_plan`'s order, layer by layer, so the reference under the
        same seed draws the same masks)."""
        flat = self._flat_weights
        if not (self.training and self.weight_drop):
            return flat
        names, p = self._flat_weights_names, self.weight_drop
        return [
            F.dropout(w, p, training=True) if n.startswith("weight_hh") else w
            for n, w in zip(names, flat)
        ]

    # --- the implementation switch ------------------------------------------------------------
    def _uses_torch_kernel(self) -> bool:
        """True when the math is exactly PyTorch's cell, so `torch._VF` can run it (and, in an
        export, when torch's op has an exported form). Weight drop is (torch's kernel runs the
        dropped W_hh); recurrent dropout in training and zoneout are not."""
        return not self._steps_differ()

    def _steps_differ(self) -> bool:
        """True when the regularisers change the step itself now: zoneout (training and its
        eval form), recurrent dropout in training."""
        return any(self.zoneout) or (self.training and bool(self.recurrent_dropout))

    def _onnx_maps(self) -> bool:
        """True when ONNX's LSTM/GRU/RNN node computes this layer (`kernels.onnx_export`): no
        regulariser in effect (at eval dropouts vanish; zoneout's eval form does not)."""
        return not (self._steps_differ() or self._dropping())

    @property
    def implementation(self) -> str:
        """What runs: "torch" (`torch._VF` fused kernels), "fused" (unroll's), "reference", or
        "onnx" (ONNX nodes, while torch.onnx.export records: `kernels.onnx_export`).

        The one place that turns ``impl`` into an implementation. Where the fused kernel cannot
        run (no such kernel, or a projection), "fused" and "auto" fall back to torch's kernel
        if the math is torch's, else to the reference. While a forward is traced or exported
        (see `exporting`) only portable ops may be recorded, whatever ``impl`` says: ONNX's
        own recurrent node for torch.onnx.export (every variant, any T), else torch's op where
        the math is torch's (its traced form takes any T, a traced loop one T only), else the
        reference loop.
        """
        if exporting():
            if exporting_to_onnx() and self._onnx_maps():
                return "onnx"
            return "torch" if self._uses_torch_kernel() else "reference"
        if self.impl == "reference":
            return "reference"
        fused = self._has_fused_kernel()
        if (self.impl == "fused" or self._prefers_fused()) and fused:
            return "fused"
        if self._uses_torch_kernel():
            return "torch"
        return "fused" if fused else "reference"

    def _has_fused_kernel(self) -> bool:
        return False

    def _prefers_fused(self) -> bool:
        """Hook: True where auto should take the fused kernel over torch's although torch's
        computes the same (LSTM: weight drop in training)."""
        return False

    def _prepare_kernels(self) -> None:
        """Hook: load what the implementation needs before the first forward (LSTM: the
        compiled CPU loops, so that torch.compile never traces their build)."""

    # --- parameters per layer/direction -------------------------------------------------------
    def _get(self, name: str, k: int) -> Tensor | None:
        """Parameter ``name`` of layer/direction k, or None. getattr, not _parameters: a
        parametrized weight (e.g. weight drop) is computed here."""
        return getattr(self, name + self._suffix(*divmod(k, self.num_directions)), None)

    def _weights(self, k: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        return tuple(self._get(n, k) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def flatten_parameters(self) -> None:
        """Lay the weights out as one contiguous cuDNN buffer, as `torch.nn.LSTM` does.

        CUDA only (a no-op elsewhere); called after ``.to()``/``.cuda()`` and by
        `reset_parameters` (so a layer built with ``device="cuda"`` is flat too). Without it
        cuDNN compacts the weights on every call (and warns). Peepholes are not cuDNN weights.
        """
        flat = self._flat_weights
        first = flat[0]
        if not first.is_cuda or not torch.backends.cudnn.is_acceptable(first):
            return
        if any(
            not isinstance(w, nn.Parameter) or w.dtype != first.dtype or not w.is_cuda for w in flat
        ):
            return
        if len({w.data_ptr() for w in flat}) != len(flat):  # aliased weights: leave them
            return
        from torch.backends.cudnn import rnn as cudnn_rnn

        with torch.cuda.device_of(first), torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():
                torch._cudnn_rnn_flatten_weight(
                    flat,
                    (4 if self.bias else 2) + (1 if self.proj_size else 0),
                    self.input_size,
                    cudnn_rnn.get_cudnn_mode(self.mode),
                    self.hidden_size,
                    self.proj_size,
                    self.num_layers,
                    self.batch_first,
                    self.bidirectional,
                )

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self.flatten_parameters()
        self._prepare_kernels()  # e.g. moved from meta/cuda to the CPU
        return out

    @property
    def _flat_weights_names(self) -> list[str]:
        """`torch.nn.RNNBase`'s: the names of `_flat_weights`, in `torch._VF`'s order: per layer,
        per direction: weight_ih, weight_hh[, bias_ih, bias_hh][, weight_hr] (torch reads a
        projection off the count). Peepholes are not torch's weights."""
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else [])
        names += ["weight_hr"] if self.proj_size else []
        return [
            n + self._suffix(*divmod(k, self.num_directions))
            for k in range(self.num_layers * self.num_directions)
            for n in names
        ]

    @property
    def _flat_weights(self) -> list[Tensor]:
        """`torch.nn.RNNBase`'s: the weights `torch._VF` takes, read now (with getattr, so a
        parametrization is honoured; torch.nn keeps a list it refreshes on assignment)."""
        return [getattr(self, n) for n in self._flat_weights_names]

    # --- torch.nn's own module (`TorchTwin`) ---------------------------------------------------
    def _torch_module(self) -> nn.RNNBase:
        kwargs = {
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
        }
        if self.mode == "LSTM":
            cls, kwargs["proj_size"] = nn.LSTM, self.proj_size
        elif self.mode == "GRU":
            cls = nn.GRU
        else:
            cls, kwargs["nonlinearity"] = nn.RNN, self.mode[4:].lower()
        return cls(self.input_size, self.hidden_size, **kwargs, device="meta")

    # --- validation ----------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        name, w = type(self).__name__, self.weight_ih_l0
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: expected input with {self.input_size} features (last dim), "
                f"got {x.shape[-1]}"
            )
        check_like(name, "input", x, w)

    def _state_sizes(self) -> tuple[int, ...]:
        """Last dim of each state tensor: (R,), the LSTM's (R, H) for (h, c)."""
        return (
            (self._output_size, self.hidden_size) if self._has_cell_state else (self.hidden_size,)
        )

    def _check_state(self, hx, batch: int, unbatched: bool) -> tuple[Tensor, ...] | None:
        """Validate ``hx`` and return it as a tuple of (L·D, B, ·) tensors, or None."""
        if hx is None:
            return None
        name, w = type(self).__name__, self.weight_ih_l0
        if self._has_cell_state:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError(
                    f"{name}: expected hx to be a pair (h_0, c_0) or None, got {type(hx).__name__}"
                )
            parts, names = tuple(hx), ("h_0", "c_0")
        else:
            parts, names = (hx,), ("h_0",)
        LD = self.num_layers * self.num_directions
        for s, what, size in zip(parts, names, self._state_sizes()):
            shape = (LD, size) if unbatched else (LD, batch, size)
            check_cell_state(name, what, s, shape, w)
        return tuple(s.unsqueeze(1) for s in parts) if unbatched else parts

    def _check_lengths(self, lengths: Lengths, batch: int, steps: int) -> Tensor:
        """Validate ``lengths`` and return it as a CPU int64 tensor (B,)."""
        name = type(self).__name__
        if isinstance(lengths, Tensor):
            if lengths.dim() != 1 or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
                raise ValueError(
                    f"{name}: expected lengths to be a 1-D integer tensor, "
                    f"got {lengths.dim()}-D {lengths.dtype}"
                )
            lengths_cpu = lengths.to("cpu", torch.int64)  # a host sync: variable-length path only
        else:
            try:
                lengths_cpu = torch.as_tensor(list(lengths), dtype=torch.int64)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(
                    f"{name}: expected lengths to be a sequence of ints, got {lengths!r}"
                ) from None
            if lengths_cpu.dim() != 1:
                raise ValueError(
                    f"{name}: expected lengths to be a flat sequence of ints, got {lengths!r}"
                )
        if lengths_cpu.numel() != batch:
            raise ValueError(
                f"{name}: expected {batch} lengths (one per sequence), got {lengths_cpu.numel()}"
            )
        # Not while exporting: the lengths are then an input of the graph, their values those
        # of the example (a trace would warn, torch.export would refuse to read them).
        if (
            not exporting()
            and batch
            and (int(lengths_cpu.min()) <= 0 or int(lengths_cpu.max()) > steps)
        ):
            raise ValueError(
                f"{name}: expected every length in [1, {steps}] (T = {steps}), got "
                f"min {int(lengths_cpu.min())}, max {int(lengths_cpu.max())}"
            )
        return lengths_cpu

    # --- forward -------------------------------------------------------------------------------
    # ``state`` is positional-or-keyword, not keyword-only: torch.onnx's TorchScript exporter
    # passes every parameter with a default positionally.
    def forward(self, input, hx=None, lengths: Lengths | None = None, state=None):
        """Run the layer: ``y, h_n = layer(input, hx=None, lengths=None)``, as torch.nn's.

        Args:
            input: (T, B, C), or (B, T, C) with batch_first, or unbatched (T, C); or a
                PackedSequence.
            hx: initial state, (L·D, B, H) per tensor, (L·D, H) unbatched (LSTM: a pair
                (h_0, c_0), h_0 (L·D, B, P) with proj_size); None = zeros.
            lengths: valid steps per sequence, (B,) ints in [1, T], with padded input; None =
                all T. (unroll's; torch.nn takes a PackedSequence, which works here too.)
            state: another name for ``hx`` (unroll's older keyword); give one of the two.
        Returns:
            y: (T, B, D·R) (batch_first: (B, T, D·R)), zero at padded steps; a PackedSequence
            for a PackedSequence input. h_n: (L·D, B, R) (LSTM: (h_n, c_n), c_n (L·D, B, H)).
        """
        name = type(self).__name__
        x, hx = input, hx_or_state(name, hx, state)
        if isinstance(x, PackedSequence):
            if lengths is not None:
                raise ValueError(
                    f"{name}: expected lengths=None with a PackedSequence (it carries its lengths)"
                )
            return self._forward_packed(x, hx)
        if not isinstance(x, Tensor):
            raise ValueError(
                f"{name}: expected input to be a Tensor or PackedSequence, got {type(x).__name__}"
            )
        if x.dim() not in (2, 3):
            raise ValueError(
                f"{name}: expected input of shape (T, B, C), (B, T, C) or (T, C), "
                f"got {tuple(x.shape)}"
            )
        self._check_input(x)
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(0 if self.batch_first else 1)
        T, B = (x.shape[1], x.shape[0]) if self.batch_first else (x.shape[0], x.shape[1])
        hx = self._check_state(hx, B, unbatched)
        if lengths is not None:
            lengths = self._check_lengths(lengths, B, T)

        impl = self.implementation
        if impl == "torch":
            if lengths is None:
                y, hn = self._torch_call(x, None, hx, self.batch_first)
            else:
                packed = pack_padded_sequence(x, lengths, self.batch_first, enforce_sorted=False)
                y, hn = self._torch_packed(packed, hx)
                y = pad_packed_sequence(y, self.batch_first, total_length=T)[0]
        else:
            xt = x.transpose(0, 1) if self.batch_first else x
            y, hn = self._run_own(xt, hx, lengths, impl)
            y = y.transpose(0, 1) if self.batch_first else y
        if unbatched:
            y = y.squeeze(0 if self.batch_first else 1)
            hn = tuple(s.squeeze(1) for s in hn)
        return y, self._pack_state(hn)

    def _pack_state(self, hn: tuple[Tensor, ...]):
        return hn if self._has_cell_state else hn[0]

    def _forward_packed(self, packed: PackedSequence, hx):
        name = type(self).__name__
        if packed.data.dim() != 2:
            raise ValueError(
                f"{name}: expected PackedSequence data of shape (N, C), "
                f"got {tuple(packed.data.shape)}"
            )
        self._check_input(packed.data)
        B = int(packed.batch_sizes[0])
        hx = self._check_state(hx, B, False)
        impl = self.implementation
        if impl == "torch":
            y, hn = self._torch_packed(packed, hx)
            return y, self._pack_state(hn)
        padded, lengths = pad_packed_sequence(packed)  # (T, B, C) in the caller's batch order
        y, hn = self._run_own(padded, hx, lengths, impl)
        order = packed.sorted_indices
        y_sorted = y if order is None else y.index_select(1, order)
        lengths_sorted = lengths if order is None else lengths.index_select(0, order.cpu())
        data = pack_padded_sequence(y_sorted, lengths_sorted, enforce_sorted=True).data
        y = PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        return y, self._pack_state(hn)

    def _torch_packed(self, packed: PackedSequence, hx):
        """Run `torch._VF` on a PackedSequence; state in the caller's batch order."""
        if hx is not None and packed.sorted_indices is not None:
            hx = tuple(s.index_select(1, packed.sorted_indices) for s in hx)
        data, hn = self._torch_call(packed.data, packed.batch_sizes, hx, False)
        if packed.unsorted_indices is not None:
            hn = tuple(s.index_select(1, packed.unsorted_indices) for s in hn)
        y = PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        return y, hn

    def _zeros_state(self, x: Tensor, batch: int) -> tuple[Tensor, ...]:
        LD = self.num_layers * self.num_directions
        return tuple(
            torch.zeros(LD, batch, size, dtype=x.dtype, device=x.device)
            for size in self._state_sizes()
        )

    def _torch_call(self, x, batch_sizes, hx, batch_first):
        """`torch._VF.lstm/gru/rnn_*` on a padded (batch_sizes None) or packed input."""
        raise NotImplementedError

    def _torch_call_outside_autocast(self, x, batch_sizes, hx, batch_first):
        """`_torch_call` with autocast off, in the weights' dtype (`_autocast_to_half`)."""
        dtype = self.weight_ih_l0.dtype
        with torch.autocast(x.device.type, enabled=False):
            hx = None if hx is None else tuple(s.to(dtype) for s in hx)
            return self._torch_call(x.to(dtype), batch_sizes, hx, batch_first)

    def _run_own(self, x: Tensor, hx, lengths: Tensor | None, impl: str):
        """Reference/fused path on time-major x (T, B, C): stacks layers and directions."""
        T, B = x.shape[0], x.shape[1]
        hx = self._zeros_state(x, B) if hx is None else hx
        D = self.num_directions
        if impl == "reference" and torch.jit.is_tracing():
            # A trace records the loop below step by step and nothing says so; torch.export
            # (which specializes T too) fails loudly instead when T is declared dynamic.
            with warnings.catch_warnings():  # T is a traced size: printing it is no data flow
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                steps = int(T)
            warnings.warn(
                f"{type(self).__name__}: traced as the reference loop, unrolled over the example "
                f"input's T = {steps} steps: the traced/exported graph takes that length only",
                stacklevel=2,
            )
        valid = rev_index = None
        if lengths is not None:
            lengths = lengths.to(x.device)
            steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
            valid = steps < lengths  # (T, B)
            # Reverse each sequence within its own length; padded steps stay where they are.
            rev_index = torch.where(valid, lengths - 1 - steps, steps)  # (T, B), an involution
            # Padding may hold anything (NaN too); zero it so no step sees it.
            x = torch.where(valid.unsqueeze(2), x, x.new_zeros(()))

        def reverse(t: Tensor) -> Tensor:
            if rev_index is None:
                return t.flip(0)
            return t.gather(0, rev_index.unsqueeze(2).expand_as(t))

        direction = {"fused": self._fused_direction, "onnx": self._onnx_direction}.get(
            impl, self._reference_direction
        )
        layer_input, finals = x, []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                # Between layers only (Zaremba et al. 2014): never on the recurrent state.
                layer_input = F.dropout(layer_input, self.dropout, training=True)
            outs = []
            for d in range(D):
                k = layer * D + d
                xin = reverse(layer_input) if d else layer_input
                y, final = direction(xin, tuple(s[k] for s in hx), k, valid, lengths)
                outs.append(reverse(y) if d else y)
                finals.append(final)
            layer_input = torch.cat(outs, 2) if D == 2 else outs[0]
        hn = tuple(torch.stack([f[i] for f in finals]) for i in range(len(hx)))
        return layer_input, hn

    def _reference_direction(self, x, state, k, valid, lengths):
        """One layer/direction by the reference loop; returns y (T, B, R) and the final state."""
        plan = self._plan(k, x)
        x_proj = self._input_projection(x, k)  # (T, B, G·H): for all steps as one GEMM
        ys = []
        for t in range(x.shape[0]):
            new = self._step(x_proj[t], state, k, plan, t)
            if valid is None:
                state = new
                ys.append(new[0])
            else:  # padded steps keep the state and output zeros
                m = valid[t].unsqueeze(1)  # (B, 1)
                state = tuple(torch.where(m, n, s) for n, s in zip(new, state))
                ys.append(torch.where(m, new[0], new[0].new_zeros(())))
        return torch.stack(ys), state

    def _input_projection(self, x: Tensor, k: int) -> Tensor:
        w_ih, _, b_ih, _ = self._weights(k)
        return F.linear(x, w_ih, b_ih)

    def _step(
        self, x_proj: Tensor, state: tuple[Tensor, ...], k: int, plan: dict, t: int
    ) -> tuple[Tensor, ...]:
        """One step of layer/direction k at time t, with `_plan`'s weights and masks."""
        raise NotImplementedError

    def _fused_direction(self, x, state, k, valid, lengths):
        raise NotImplementedError

    def _onnx_direction(self, x, state, k, valid, lengths):
        """One layer/direction as one ONNX node (`kernels.onnx_export`): y (T, B, R) and the
        final state."""
        raise NotImplementedError


def _at(keep: Tensor | float | None, t: int) -> Tensor | float | None:
    """Zoneout's z at step t: a (T, B, ·) tensor's row t, or the eval-time float p as is."""
    return keep[t] if isinstance(keep, Tensor) else keep


def _zero_padding(y: Tensor, valid: Tensor | None) -> Tensor:
    """y (T, B, ·) with zeros where valid (T, B) is False (as every implementation outputs)."""
    return y if valid is None else torch.where(valid.unsqueeze(2), y, y.new_zeros(()))


# Device types whose autocast runs torch's fused RNN kernels in float16 whatever dtype autocast
# was asked for: the autocast wrapper of cuDNN's RNN casts to half (torch's AutocastRNN.cpp). A
# layer there runs torch's kernel outside autocast, in its weights' dtype (`_autocast_to_half`).
AUTOCAST_RNN_HALF = ("cuda",)


def _autocast_to_half(x: Tensor) -> bool:
    """True where torch's RNN kernel would run `x` in float16 under an autocast that asked for
    another dtype (bf16): a bf16 run would silently train its recurrent layers in fp16 (a
    5-bit exponent, with no grad scaler). Those layers run in the weights' dtype instead."""
    kind = x.device.type
    return (
        kind in AUTOCAST_RNN_HALF
        and torch.is_autocast_enabled(kind)
        and torch.get_autocast_dtype(kind) != torch.float16
    )


def _vf_lstm(x, batch_sizes, hx, flat, has_bias, num_layers, dropout, train, bidir, batch_first):
    """`torch._VF.lstm` on a padded (batch_sizes None) or packed input: y, (h_n, c_n)."""
    if batch_sizes is None:
        y, h, c = torch._VF.lstm(
            x, hx, flat, has_bias, num_layers, dropout, train, bidir, batch_first
        )
    else:
        y, h, c = torch._VF.lstm(
            x, batch_sizes, hx, flat, has_bias, num_layers, dropout, train, bidir
        )
    return y, (h, c)


class LSTM(_RNNBase):
    """Multi-layer LSTM: `torch.nn.LSTM` (projections too) plus variants and an implementation
    switch.

    ``y, (h_n, c_n) = lstm(input, hx=None, lengths=None)`` — see `_RNNBase.forward` and the
    module docstring for shapes, variable lengths and the implementations.

    Args:
        input_size (C), hidden_size (H), num_layers (L), bias, batch_first, bidirectional,
            device, dtype: as `torch.nn.LSTM`, in its positional order.
        dropout: dropout on the outputs of each layer except the last (Zaremba et al. 2014), in
            training mode only; never on the recurrent state. Dropout on the network's input
            and on the last layer's output is the caller's job (the language model does it).
        proj_size (P): as `torch.nn.LSTM` (LSTMP, Sak et al. 2014): h_t = W_hr·(o_t ⊙ tanh(c_t)),
            parameters ``weight_hr_l{k}`` (P, H); h and the output have P units, c keeps H.
            Runs on torch's kernel (standard cell) or the reference (variants): the fused
            kernel has no projection.
    Keyword-only, unroll's own:
        forget_bias: constant added to the forget gate (TensorFlow's BasicLSTMCell), not stored.
        peephole: diagonal peepholes (Gers & Schmidhuber 2000), parameters
            ``weight_ci_l{k}``, ``weight_cf_l{k}``, ``weight_co_l{k}`` (H,) (+ ``_reverse``).
        coupled: CIFG, i_t = 1 − f_t. The input-gate rows stay in the 4H-row weights (so the
            layout is nn.LSTM's) but are unused and get zero gradient; no ``weight_ci``.
        impl: "auto" (torch's fused kernel for the standard cell, forget_bias folded into the
            bias; the fused kernel for peephole/coupled), "fused" (the hand-written kernel
            `unroll.nn.kernels.lstm_fused`, every variant) or "reference" (the loop over
            `unroll.nn.cells.lstm_step`). All three give the same numbers to rounding.
    Regularisers and normalisation (keyword-only; equations and citations in
    `unroll.nn.cells.lstm`; every mask drawn once per forward from the global RNG, `_plan`):
        layer_norm: LN on W_ih·x and W_hh·h separately (4H each) and on c_t before the output
            tanh (Ba et al. 2016); parameters ``weight_ln_ih``/``weight_ln_hh`` (4H,),
            ``weight_ln_c``/``bias_ln_c`` (H,) per layer/direction.
        recurrent_dropout: p of the recurrent dropout, in training; recurrent_dropout_mode
            "gal" (Gal & Ghahramani 2016: one mask per sequence on h_{t-1} entering the gates)
            or "semeniuta" (Semeniuta et al. 2016: one mask per sequence on the cell update g).
        zoneout: (p_c, p_h), or one p for both (Krueger et al. 2017): per step and unit, keep
            the previous c / h with that probability in training; at eval the expectation
            (c_t = p_c c_{t-1} + (1 − p_c) c̃_t, likewise h), as the paper.
        weight_drop: DropConnect on W_hh, one mask per forward (Merity et al. 2018), training.
    What runs (``implementation``): weight drop on every implementation (auto takes the
    fused kernel for it in training; torch's kernel, with a projection, takes the dropped
    W_hh); recurrent dropout and zoneout on the fused kernel (masks as its inputs) and the
    reference; layer_norm on the reference only (auto and fused fall back to it, and
    ``implementation`` says "reference"), as do the other options with proj_size.
    Refused: layer_norm with coupled (the unused input-gate rows would enter LN's statistics).
    """

    _gates = 4
    _has_cell_state = True
    mode = "LSTM"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        forget_bias: float = 0.0,
        peephole: bool = False,
        coupled: bool = False,
        impl: str = "auto",
        layer_norm: bool = False,
        recurrent_dropout: float = 0.0,
        recurrent_dropout_mode: str = "gal",
        zoneout: float | tuple[float, float] = 0.0,
        weight_drop: float = 0.0,
    ) -> None:
        self.forget_bias = float(forget_bias)
        self.peephole, self.coupled = bool(peephole), bool(coupled)
        self.layer_norm = bool(layer_norm)
        if self.layer_norm and self.coupled:
            raise ValueError(
                "LSTM: layer_norm=True with coupled=True is not supported (the unused input-gate "
                "rows would enter layer norm's mean and variance)"
            )
        if recurrent_dropout_mode not in ("gal", "semeniuta"):
            raise ValueError(
                "LSTM: expected recurrent_dropout_mode 'gal' or 'semeniuta', "
                f"got {recurrent_dropout_mode!r}"
            )
        self.recurrent_dropout_mode = recurrent_dropout_mode
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device,
            dtype,
            impl=impl,
            weight_drop=weight_drop,
            recurrent_dropout=recurrent_dropout,
            zoneout=check_zoneout("LSTM", zoneout),
        )
        # forget_bias on the f rows, folded into the bias at call time (a buffer so it follows
        # .to(); not persistent, so the state_dict stays nn.LSTM's).
        fb = torch.zeros(4 * hidden_size, device=device, dtype=dtype)
        fb[hidden_size : 2 * hidden_size] = self.forget_bias
        self.register_buffer("_forget_bias_rows", fb, persistent=False)
        self.reset_parameters()
        self._prepare_kernels()

    def _extra_parameters(self) -> dict[str, tuple[int, ...]]:
        H, shapes = self.hidden_size, {}
        if self.proj_size:  # after the biases, as torch.nn.LSTM registers it
            shapes["weight_hr"] = (self.proj_size, H)
        if self.peephole:
            names = (
                ("weight_cf", "weight_co")
                if self.coupled
                else ("weight_ci", "weight_cf", "weight_co")
            )
            shapes.update({n: (H,) for n in names})
        if self.layer_norm:
            shapes.update(weight_ln_ih=(4 * H,), weight_ln_hh=(4 * H,))
            shapes.update(weight_ln_c=(H,), bias_ln_c=(H,))
        return shapes

    def reset_parameters(self) -> None:
        """Uniform(-1/√H, 1/√H) as torch.nn.LSTM; layer norm's gains 1 and shift 0."""
        super().reset_parameters()
        for name, p in self.named_parameters():
            if name.startswith(("weight_ln_", "bias_ln_")):
                nn.init.constant_(p, 1.0 if name.startswith("weight") else 0.0)

    def _options(self) -> dict:
        """The regulariser/normalisation options that are set, by name (for repr)."""
        opts = {"layer_norm": self.layer_norm, "recurrent_dropout": self.recurrent_dropout}
        if self.recurrent_dropout and self.recurrent_dropout_mode != "gal":
            opts["recurrent_dropout_mode"] = self.recurrent_dropout_mode
        opts["zoneout"] = self.zoneout if any(self.zoneout) else 0
        opts["weight_drop"] = self.weight_drop
        return opts

    def extra_repr(self) -> str:
        return super().extra_repr() + variant_repr(
            self.forget_bias, self.peephole, self.coupled, **self._options()
        )

    def _uses_torch_kernel(self) -> bool:
        variant = self.peephole or self.coupled or self.layer_norm
        return not variant and super()._uses_torch_kernel()

    def _onnx_maps(self) -> bool:
        return not self.layer_norm and super()._onnx_maps()

    def _why_not_torch(self) -> str | None:
        variant = variant_repr(self.forget_bias, self.peephole, self.coupled, **self._options())
        return f"an LSTM variant: {variant.lstrip(', ')}" if variant else super()._why_not_torch()

    def _prefers_fused(self) -> bool:
        # Weight drop hands torch's kernel a new W_hh every call, which oneDNN (and cuDNN)
        # re-lays out each time: measured 1.2-1.7x nn.LSTM on CPU vs 1.1-1.4x for the fused
        # kernel (BENCHMARKS.md, issue 26).
        return self.training and bool(self.weight_drop)

    def _has_fused_kernel(self) -> bool:
        # The kernel's time loops recur on o ⊙ tanh(c) itself; a projection would need others.
        # Layer norm is not in its loops (it runs on the reference).
        return not (self.proj_size or self.layer_norm)

    def _prepare_kernels(self) -> None:
        # The compiled CPU loops are built (or loaded from the cache) here, eagerly: built on
        # first use inside a forward that torch.compile traces, the build (a lock, hashing,
        # a compiler run) would be traced too, and fail with fullgraph=True.
        if self.implementation == "fused":
            w = self.weight_ih_l0
            time_loops(w.device, w.dtype)

    def _peepholes(self, k: int) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        return tuple(self._get(n, k) for n in ("weight_ci", "weight_cf", "weight_co"))

    def _torch_call(self, x, batch_sizes, hx, batch_first):
        if _autocast_to_half(x):
            return self._torch_call_outside_autocast(x, batch_sizes, hx, batch_first)
        flat, has_bias = self._call_flat_weights(), self.bias  # W_hh weight-dropped in training
        if self.forget_bias:  # fold the constant into bias_ih of every layer/direction
            fb, folded = self._forget_bias_rows, []
            per_k = len(flat) // (self.num_layers * self.num_directions)
            for k in range(self.num_layers * self.num_directions):
                w_ih, w_hh = flat[k * per_k], flat[k * per_k + 1]
                if self.bias:
                    b_ih, b_hh = flat[k * per_k + 2], flat[k * per_k + 3]
                    folded += [w_ih, w_hh, b_ih + fb, b_hh]
                else:
                    folded += [w_ih, w_hh, fb, torch.zeros_like(fb)]
                folded += [self._get("weight_hr", k)] if self.proj_size else []
            flat, has_bias = folded, True
        if hx is None:
            B = x.shape[0] if batch_first else x.shape[1]
            if batch_sizes is not None:
                B = int(batch_sizes[0])
            hx = self._zeros_state(x, B)
        args = (x, batch_sizes, hx, flat, has_bias, self.num_layers, self.dropout, self.training)
        args += (self.bidirectional, batch_first)
        if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
            # Left to eager, as torch.nn.LSTM is under torch.compile (dynamo does not trace
            # torch's RNN modules): traced, the CPU lowering of this op (mkldnn_rnn_layer)
            # fails when the weights need gradients (torch 2.13). torch.export traces it fine.
            return torch.compiler.disable(_vf_lstm, reason="torch's LSTM kernel runs eagerly")(
                *args
            )
        if self.forget_bias and x.is_cuda:
            # The folded bias is a fresh tensor, so cuDNN compacts the weights on each call and
            # says so: the (small) price of an unstored forget_bias.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "RNN module weights are not part of single")
                return _vf_lstm(*args)
        return _vf_lstm(*args)

    def _input_projection(self, x, k):
        w_ih, _, b_ih, _ = self._weights(k)
        return input_projection(x, w_ih, b_ih, self._get("weight_ln_ih", k))

    def _step(self, x_proj, state, k, plan, t):
        ln_c = None
        if self.layer_norm:
            ln_c = (self._get("weight_ln_c", k), self._get("bias_ln_c", k))
        return lstm_step(
            x_proj,
            state[0],
            state[1],
            plan["w_hh"],
            self._get("bias_hh", k),
            *self._peepholes(k),
            self.forget_bias,
            self.coupled,
            self._get("weight_hr", k),
            ln_hh=self._get("weight_ln_hh", k),
            ln_c=ln_c,
            mask_h=plan["mask_h"],
            mask_g=plan["mask_g"],
            keep_c=_at(plan["keep_c"], t),
            keep_h=_at(plan["keep_h"], t),
        )

    def _fused_direction(self, x, state, k, valid, lengths):
        plan = self._plan(k, x)
        w_ih, _, b_ih, b_hh = self._weights(k)
        w_hh = plan["w_hh"]
        keep_c = keep_h = None
        if any(self.zoneout):  # the kernel takes z as (T, B, H) tensors: p at eval, 0 if off
            T, B, H = x.shape[0], x.shape[1], self.hidden_size
            keep_c, keep_h = (
                k if isinstance(k, Tensor) else x.new_full((T, B, H), float(k or 0.0))
                for k in (plan["keep_c"], plan["keep_h"])
            )
        y, h, c = lstm_sequence(
            x,
            state[0],
            state[1],
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            *self._peepholes(k),
            forget_bias=self.forget_bias,
            coupled=self.coupled,
            lengths=lengths,
            mask_h=plan["mask_h"],
            mask_g=plan["mask_g"],
            keep_c=keep_c,
            keep_h=keep_h,
        )
        return y, (h, c)

    def _onnx_direction(self, x, state, k, valid, lengths):
        w_ih, w_hh, b_ih, b_hh = self._weights(k)
        y, h, c = lstm_onnx(
            x,
            state[0],
            state[1],
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            *self._peepholes(k),
            self._get("weight_hr", k),
            hidden_size=self.hidden_size,
            forget_bias=self.forget_bias,
            coupled=self.coupled,
            lengths=lengths,
        )
        return _zero_padding(y, valid), (h, c)


def _vf_gru_or_rnn(fn, x, batch_sizes, h, flat, bias, num_layers, dropout, train, bidir, bf):
    """`torch._VF.gru`/`rnn_tanh`/`rnn_relu` on a padded (batch_sizes None) or packed input."""
    if batch_sizes is None:
        return fn(x, h, flat, bias, num_layers, dropout, train, bidir, bf)
    return fn(x, batch_sizes, h, flat, bias, num_layers, dropout, train, bidir)


class _HiddenStateRNN(_RNNBase):
    """GRU and RNN: one state tensor h, run by `torch._VF` function `_vf`; ONNX's node
    `_onnx_op`."""

    _onnx_op: str

    def _vf(self):
        raise NotImplementedError

    def _onnx_direction(self, x, state, k, valid, lengths):
        w_ih, w_hh, b_ih, b_hh = self._weights(k)
        y, h = hidden_state_onnx(
            self._onnx_op,
            x,
            state[0],
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            hidden_size=self.hidden_size,
            nonlinearity=getattr(self, "nonlinearity", "tanh"),  # RNN's
            lengths=lengths,
        )
        return _zero_padding(y, valid), (h,)

    def _torch_call(self, x, batch_sizes, hx, batch_first):
        if _autocast_to_half(x):
            return self._torch_call_outside_autocast(x, batch_sizes, hx, batch_first)
        if hx is None:
            B = int(batch_sizes[0]) if batch_sizes is not None else x.shape[0 if batch_first else 1]
            hx = self._zeros_state(x, B)
        y, h = _vf_gru_or_rnn(
            self._vf(),
            x,
            batch_sizes,
            hx[0],
            self._call_flat_weights(),
            self.bias,
            self.num_layers,
            self.dropout,
            self.training,
            self.bidirectional,
            batch_first,
        )
        return y, (h,)


class GRU(_HiddenStateRNN):
    """Multi-layer GRU, `torch.nn.GRU`'s interface (equations in `unroll.nn.cells.gru`).

    ``y, h_n = gru(input, hx=None, lengths=None)``. Arguments as `torch.nn.GRU`, in its order;
    dropout only between layers in training mode (never on the recurrent state; input/output
    dropout is the caller's). impl (keyword-only): "auto" and "fused" run torch's fused kernel
    (cuDNN/oneDNN), "reference" the loop over `unroll.nn.cells.gru_step` — the GRU has no
    variants, so the math is always PyTorch's.
    """

    _gates = 3
    mode = "GRU"
    _onnx_op = "GRU"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        impl: str = "auto",
        recurrent_dropout: float = 0.0,
        zoneout: float = 0.0,
        weight_drop: float = 0.0,
    ) -> None:
        if isinstance(zoneout, (tuple, list)):
            raise ValueError(
                f"GRU: expected zoneout as one p (the GRU has no cell state), got {zoneout!r}"
            )
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,  # proj_size: LSTM only
            device,
            dtype,
            impl=impl,
            weight_drop=weight_drop,
            recurrent_dropout=recurrent_dropout,
            zoneout=(0.0, check_probability("GRU", "zoneout", zoneout)),
        )
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = super().extra_repr()
        for name in ("recurrent_dropout", "weight_drop"):
            s += f", {name}={getattr(self, name)}" if getattr(self, name) else ""
        return s + (f", zoneout={self.zoneout[1]}" if self.zoneout[1] else "")

    def _why_not_torch(self) -> str | None:
        if self.recurrent_dropout or self.weight_drop or self.zoneout[1]:
            return "recurrent_dropout, zoneout or weight_drop: torch.nn.GRU has none"
        return super()._why_not_torch()

    def _vf(self):
        return torch._VF.gru

    def _step(self, x_proj, state, k, plan, t):
        b_hh = self._get("bias_hh", k)
        keep_h = _at(plan["keep_h"], t)
        return (
            gru_step(x_proj, state[0], plan["w_hh"], b_hh, mask_h=plan["mask_h"], keep_h=keep_h),
        )


class RNN(_HiddenStateRNN):
    """Multi-layer Elman RNN, `torch.nn.RNN`'s interface.

    h_t = φ(W_ih·x_t + b_ih + W_hh·h_{t-1} + b_hh), φ = tanh or relu.

    ``y, h_n = rnn(input, hx=None, lengths=None)``. ``nonlinearity`` is "tanh" or "relu" (the
    4th positional argument, as in torch); other arguments and impl as `GRU`.
    """

    _gates = 1
    _onnx_op = "RNN"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        impl: str = "auto",
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"RNN: expected nonlinearity 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,  # proj_size: LSTM only
            device,
            dtype,
            impl=impl,
        )
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "tanh" else "")

    @property
    def mode(self) -> str:
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"

    def _vf(self):
        return torch._VF.rnn_tanh if self.nonlinearity == "tanh" else torch._VF.rnn_relu

    def _step(self, x_proj, state, k, plan, t):
        b_hh = self._get("bias_hh", k)
        return (rnn_step(x_proj, state[0], plan["w_hh"], b_hh, self.nonlinearity),)
