"""minGRU and minLSTM layers (Feng et al. 2024, arXiv 2410.01201): recurrences that train in
parallel over time.

The gates read x_t only (equations in `unroll.nn.cells.min_rnn`), so a layer is one GEMM for
the whole sequence (the input projection) and a linear recurrence h_t = a_t ⊙ h_{t-1} + b_t,
which runs as a scan. The interface is our other layers' (`unroll.nn.layers`): stacked,
bidirectional, ``batch_first``, ``lengths=`` or a PackedSequence, dropout between layers, and
the state in and out (so a language model carries it across BPTT windows)::

    y, h_n = layer(input, hx=None, lengths=None)
    x (T, B, C) or (B, T, C) with batch_first       y (T, B, D·H) or (B, T, D·H)
    hx, h_n (L·D, B, H), k = layer·D + direction   (unbatched: x (T, C), hx (L·D, H))

Parameters per layer/direction: ``weight_ih_l{k}`` (nb·H, C_in) and ``bias_ih_l{k}`` (nb·H,)
(``_reverse`` for the backward direction), nb = 2 blocks (z, h̃) for minGRU, 3 (f, i, h̃) for
minLSTM. There is no weight_hh: that is the point.

Implementations (``impl``, chosen in one place, `_MinRNNBase.implementation`; all give the same
numbers to rounding, `tests/test_min_rnn.py` holds them to the reference in float64):

  reference  the loop over `mingru_step` / `minlstm_step`, one step at a time. The specification.
  scan       the paper's log-space parallel scan over all T (`kernels.scan_cpu.scan_log`).
  blocked    the same scan within blocks of 64 steps, the blocks chained
             (`kernels.scan_cpu.scan_blocked`): bounded float32 error at any T.
  fused      one fused pass per direction (gates, g() and the recurrence; the backward one
             reverse pass): the compiled CPU loop (`kernels/min_rnn_cpu.cpp`) or, on CUDA, the
             Triton kernels (`kernels.scan_triton`). float32/float64.
  auto       fused where it is available for the device and dtype, else blocked. Under
             torch.compile: blocked (plain torch ops, any T).
  export     while torch.onnx.export (dynamo=True) or torch.export records, whatever ``impl``
             says: the reference step inside torch's ``scan`` operator
             (`torch._higher_order_ops.scan`), which the ONNX exporter writes as one ONNX
             Scan node per layer and direction — the recurrence itself, constant memory at
             inference, any T. The TorchScript exporter and jit.trace get the reference loop,
             unrolled over the example's T (a warning says so).

Variable lengths: padded input steps are zeroed, the scan runs over all T (a step only sees
earlier ones, so the padding never reaches a valid step), outputs at padded steps are zero, the
reverse direction starts at each sequence's own last step, and h_n is the state after each
sequence's last valid step.

Where min-RNNs differ from an LSTM/GRU: the gates cannot see h_{t-1}, so one layer cannot
decide what to keep based on what it holds; stacking layers gives back some of that. And h_t
stays positive (g > 0) when h_0 ≥ 0.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from unroll.nn.cells.base import check_cell_state, check_like, hx_or_state
from unroll.nn.cells.min_rnn import MIN_GATES, MIN_STEPS, min_coefficients
from unroll.nn.kernels import scan_cpu

MIN_IMPLS = ("auto", "reference", "scan", "blocked", "fused")


def _compiling() -> bool:
    return torch.compiler.is_compiling() and not torch.compiler.is_exporting()


def _exporting() -> bool:
    """torch.export / torch.onnx.export(dynamo=True) (not a trace, not torch.compile)."""
    return torch.compiler.is_exporting()


def fused_loop(device: torch.device, dtype: torch.dtype):
    """The fused loop backend for tensors on ``device`` of ``dtype``, or None."""
    if dtype not in (torch.float32, torch.float64):
        return None
    if device.type == "cpu":
        return scan_cpu.CompiledMinLoop if scan_cpu.fused_available() else None
    if device.type == "cuda":
        from unroll.nn.kernels import scan_triton

        return scan_triton.loop_for(device, dtype)
    return None


class _MinRNNBase(nn.Module):
    """Parameters, validation, stacking, directions and the implementation switch."""

    mode: str  # "GRU" or "LSTM": the cell (`unroll.nn.cells.min_rnn`)

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
    ) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected {arg} to be a positive int, got {value!r}")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout <= 1.0):
            raise ValueError(f"{name}: expected dropout in [0, 1], got {dropout!r}")
        if impl not in MIN_IMPLS:
            raise ValueError(f"{name}: expected impl one of {MIN_IMPLS}, got {impl!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"{name}: dropout={dropout} acts between layers only, and num_layers=1",
                stacklevel=3,
            )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.impl = bidirectional, impl
        self.num_directions = 2 if bidirectional else 1
        kw = {"device": device, "dtype": dtype}
        G = MIN_GATES[self.mode] * hidden_size
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                sfx = self._suffix(layer, direction)
                self.register_parameter(
                    "weight_ih" + sfx, nn.Parameter(torch.empty(G, in_size, **kw))
                )
                if bias:
                    self.register_parameter("bias_ih" + sfx, nn.Parameter(torch.empty(G, **kw)))
        self.reset_parameters()

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def reset_parameters(self) -> None:
        """Uniform(-1/√H, 1/√H) for every parameter, as PyTorch initialises its RNNs."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
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

    # --- the implementation switch ------------------------------------------------------------
    @property
    def implementation(self) -> str:
        """What runs: "reference", "scan", "blocked" or "fused" (see the module docstring).
        "fused" and "auto" fall back to "blocked" where the fused loop is not available for the
        parameters' device and dtype, and under torch.compile (the fused loop is an opaque op
        with no traced form). While torch.export or torch.onnx.export(dynamo=True) records:
        "export" (the step in torch's scan operator); while jit.trace (or the TorchScript
        ONNX exporter) records: "reference" (unrolled over the example's T)."""
        if _exporting():
            return "export"
        if torch.jit.is_tracing():
            return "reference"
        if self.impl in ("reference", "scan", "blocked"):
            return self.impl
        w = self.weight_ih_l0
        if _compiling() or fused_loop(w.device, w.dtype) is None:
            return "blocked"
        return "fused"

    def _weights(self, k: int) -> tuple[Tensor, Tensor | None]:
        sfx = self._suffix(*divmod(k, self.num_directions))
        return getattr(self, "weight_ih" + sfx), getattr(self, "bias_ih" + sfx, None)

    # --- validation ----------------------------------------------------------------------------
    def _check_lengths(self, lengths, batch: int, steps: int) -> Tensor:
        name = type(self).__name__
        if isinstance(lengths, Tensor):
            if lengths.dim() != 1 or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
                raise ValueError(f"{name}: expected lengths to be a 1-D integer tensor")
            lengths = lengths.to("cpu", torch.int64)
        else:
            try:
                lengths = torch.as_tensor(list(lengths), dtype=torch.int64)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(
                    f"{name}: expected lengths to be a sequence of ints, got {lengths!r}"
                ) from None
        if lengths.dim() != 1 or lengths.numel() != batch:
            raise ValueError(f"{name}: expected {batch} lengths (one per sequence)")
        # Not while exporting: the lengths are then an input of the graph.
        if (
            not (_exporting() or torch.jit.is_tracing())
            and batch
            and (int(lengths.min()) <= 0 or int(lengths.max()) > steps)
        ):
            raise ValueError(
                f"{name}: expected every length in [1, {steps}] (T = {steps}), got "
                f"min {int(lengths.min())}, max {int(lengths.max())}"
            )
        return lengths

    # --- forward -------------------------------------------------------------------------------
    def forward(self, input, hx: Tensor | None = None, lengths=None, state=None):
        """``y, h_n = layer(input, hx=None, lengths=None)`` (shapes in the module docstring).
        ``state=`` is another name for ``hx``, as in our other layers."""
        name = type(self).__name__
        x, hx = input, hx_or_state(name, hx, state)
        w = self.weight_ih_l0
        if isinstance(x, PackedSequence):
            if lengths is not None:
                raise ValueError(f"{name}: expected lengths=None with a PackedSequence")
            padded, lens = pad_packed_sequence(x)  # (T, B, C) in the caller's batch order
            y, hn = self._forward_time_major(padded, hx, lens, False)
            order = x.sorted_indices
            y_sorted = y if order is None else y.index_select(1, order)
            lens_sorted = lens if order is None else lens.index_select(0, order.cpu())
            data = pack_padded_sequence(y_sorted, lens_sorted, enforce_sorted=True).data
            return PackedSequence(data, x.batch_sizes, x.sorted_indices, x.unsorted_indices), hn
        if not isinstance(x, Tensor) or x.dim() not in (2, 3):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"{name}: expected input of shape (T, B, C), (B, T, C) or (T, C), got {got}"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: expected input with {self.input_size} features (last dim), "
                f"got {x.shape[-1]}"
            )
        check_like(name, "input", x, w)
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)  # (T, 1, C)
            hx = None if hx is None else hx.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        y, hn = self._forward_time_major(x, hx, lengths, unbatched)
        if unbatched:
            return y.squeeze(1), hn.squeeze(1)
        return (y.transpose(0, 1) if self.batch_first else y), hn

    def _forward_time_major(self, x: Tensor, hx, lengths, unbatched: bool):
        """x (T, B, C) -> y (T, B, D·H), h_n (L·D, B, H)."""
        name, w = type(self).__name__, self.weight_ih_l0
        T, B = x.shape[0], x.shape[1]
        LD = self.num_layers * self.num_directions
        if hx is None:
            hx = x.new_zeros(LD, B, self.hidden_size)
        else:
            what = "hx" if not unbatched else "hx (unbatched: (L·D, H))"
            check_cell_state(name, what, hx, (LD, B, self.hidden_size), w)
        valid = rev_index = None
        if lengths is not None:
            lengths = self._check_lengths(lengths, B, T).to(x.device)
            steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
            valid = steps < lengths  # (T, B)
            rev_index = torch.where(valid, lengths - 1 - steps, steps)  # (T, B), an involution
            x = torch.where(valid.unsqueeze(2), x, x.new_zeros(()))  # padding may hold NaN

        def reverse(t: Tensor) -> Tensor:
            if rev_index is None:
                return t.flip(0)
            return t.gather(0, rev_index.unsqueeze(2).expand_as(t))

        impl, D = self.implementation, self.num_directions
        if impl == "reference" and torch.jit.is_tracing():
            warnings.warn(
                f"{name}: traced as the reference loop, unrolled over the example input's T: "
                "the traced graph takes that length only (torch.onnx.export(dynamo=True) "
                "exports the recurrence for any T)",
                stacklevel=3,
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
                h = self._direction(xin, hx[k], k, impl, valid)  # (T, B, H)
                if lengths is None:
                    finals.append(h[-1])
                else:
                    finals.append(h[lengths - 1, torch.arange(B, device=x.device)])
                    h = torch.where(valid.unsqueeze(2), h, h.new_zeros(()))
                outs.append(reverse(h) if d else h)
            layer_input = torch.cat(outs, 2) if D == 2 else outs[0]
        return layer_input, torch.stack(finals)

    def _direction(self, x: Tensor, h0: Tensor, k: int, impl: str, valid) -> Tensor:
        """One layer/direction: x (T, B, C), h0 (B, H) -> h_t for every t (T, B, H)."""
        w, b = self._weights(k)
        x_proj = F.linear(x, w, b)  # (T, B, nb·H): every gate of every step as one GEMM
        if impl == "reference":
            step, h, hs = MIN_STEPS[self.mode], h0, []
            for t in range(x.shape[0]):
                h = step(x_proj[t], h)
                hs.append(h)
            return torch.stack(hs)
        if impl == "export":
            from torch._higher_order_ops.scan import scan

            step = MIN_STEPS[self.mode]

            def combine(h: Tensor, xp_t: Tensor) -> tuple[Tensor, Tensor]:
                h = step(xp_t, h)
                return h, h.clone()  # carry, and this step's output

            return scan(combine, h0, x_proj)[1]
        if impl == "fused":
            if x_proj.dtype != h0.dtype or fused_loop(x.device, x_proj.dtype) is None:
                # under autocast (bf16/fp16 GEMM output): the loop runs in float32
                x_proj, h0 = x_proj.float(), h0.float()
            loop = fused_loop(x.device, x_proj.dtype)
            return scan_cpu.MinRecurrence.apply(x_proj, h0, self.mode == "LSTM", loop)
        log_a, log_b = min_coefficients(x_proj, self.mode)  # (T, B, H) each
        if impl == "scan":
            return scan_cpu.scan_log(log_a, log_b, h0)
        return scan_cpu.scan_blocked(log_a, log_b, h0)


class MinGRU(_MinRNNBase):
    """Multi-layer minGRU (Feng et al. 2024): ``y, h_n = layer(input, hx=None, lengths=None)``.

    h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ g(W_ih·x_t + b_ih), z_t = σ(W_iz·x_t + b_iz): the gates
    read the input only, so training runs as a parallel scan over time. Arguments as
    `unroll.GRU` (torch.nn.GRU's, in its order); ``impl`` as in the module docstring.
    """

    mode = "GRU"


class MinLSTM(_MinRNNBase):
    """Multi-layer minLSTM (Feng et al. 2024): ``y, h_n = layer(input, hx=None, lengths=None)``.

    h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ g(W_ih·x_t + b_ih), with f', i' = f, i / (f + i) from input
    gates: no cell state apart from h (the state is one tensor, as a GRU's). Arguments as
    `unroll.GRU`; ``impl`` as in the module docstring.
    """

    mode = "LSTM"
