"""Paths on the optimizer lab's 2-D surfaces (kerastrack.losses.surfaces): a run's trajectory over
the surface's contours, and a sweep's overlay of every optimizer's path on each surface at
its best rate of the grid (``best_paths``, the selection; ``overlay_figure``, the figure).

Figures are plain ``matplotlib.figure.Figure`` objects, as in kerastrack.figures.curves.
"""

import ast
import math
import textwrap
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.figure import Figure

GRID = 160  # contour samples per axis
LEVELS = 24  # contour levels, at quantiles of the surface's values in view (any range, any sign)
RATE_KEY = "optimizer.learning_rate"
LINESTYLES = ("-", "--", ":", "-.")


@dataclass
class Walk:
    """One walk on a surface: the start, then the position after each epoch.

    Attributes:
        label: What the legend calls it, e.g. ``adam (rate 0.1)``.
        xs: x at the start and after each epoch.
        ys: y, the same.
        final: The surface's value where it ended (NaN: it diverged).
    """

    label: str
    xs: list
    ys: list
    final: float = math.nan


def _view(paths, start, minimum=None):
    """The box to draw: the start, the minimum and every finite point of the paths within
    reach of the start (a diverged path's last points would shrink the rest to a dot), padded."""
    reach = 3.0 * max(1.0, float(np.hypot(*start)))
    points = [np.asarray([start, *([minimum] if minimum is not None else [])], float)]
    for p in paths:
        xy = np.column_stack([np.asarray(p.xs, float), np.asarray(p.ys, float)])
        xy = xy[np.isfinite(xy).all(axis=1)]
        points.append(xy[np.hypot(*(xy - start).T) <= reach] if len(xy) else xy)
    xy = np.vstack(points)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    centre, half = (lo + hi) / 2, np.maximum((hi - lo) / 2 * 1.15, 1.0)
    return centre - half, centre + half


def draw_surface(ax, surface, paths, start, styles=None):
    """Contours of the surface around ``paths``, and each path with its start and end.

    Args:
        ax: The axes.
        surface: A ``kerastrack.losses.surfaces.Surface`` (its ``value`` on NumPy arrays, and its
            ``minimum``, marked with a star when known).
        paths: ``Walk`` objects.
        start: The common start, (x, y).
        styles: One dict of line style (color, linestyle) per path; None: tab10 colours.

    Returns:
        Per path: its line, its end marker (or None) and its points, for an animation.
    """
    drawn = []
    value, minimum = surface.value, getattr(surface, "minimum", None)
    (x0, y0), (x1, y1) = _view(paths, start, minimum)
    gx, gy = np.meshgrid(np.linspace(x0, x1, GRID), np.linspace(y0, y1, GRID))
    z = np.asarray(value(gx.astype("float32"), gy.astype("float32")), dtype=float)
    levels = np.unique(np.quantile(z[np.isfinite(z)], np.linspace(0, 1, LEVELS)))
    ax.contourf(gx, gy, z, levels=levels, cmap="Greys_r", alpha=0.55)
    ax.contour(gx, gy, z, levels=levels, colors="grey", linewidths=0.4)
    cmap = matplotlib.colormaps["tab10"]
    for i, path in enumerate(paths):
        style = styles[i] if styles else {"color": cmap(i % cmap.N)}
        color = style["color"]
        xs, ys = np.asarray(path.xs, float), np.asarray(path.ys, float)
        (line,) = ax.plot(xs, ys, linewidth=1.4, marker="o", markersize=2.2, label=path.label, **style)
        finite = np.isfinite(xs) & np.isfinite(ys)
        end = None
        if finite.any():
            (end,) = ax.plot(
                xs[finite][-1],
                ys[finite][-1],
                marker="X",
                markersize=8,
                color=color,
                markeredgecolor="black",
                markeredgewidth=0.6,
            )
        drawn.append((line, end, xs, ys))
    ax.plot(*start, marker="o", markersize=8, color="white", markeredgecolor="black")
    if minimum is not None:
        ax.plot(*minimum, marker="*", markersize=12, color="gold", markeredgecolor="black")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return drawn


def trajectory_figure(surface, path, start, title):
    """One run's path over the surface's contours (the start: a white dot; the end: an X;
    the global minimum, when known: a star).

    Args:
        surface: A ``kerastrack.losses.surfaces.Surface``.
        path: The run's ``Walk``.
        start: Where it started, (x, y).
        title: The figure's title.
    """
    fig = Figure(figsize=(5.2, 4.4), layout="constrained")
    ax = fig.subplots()
    draw_surface(ax, surface, [path], start)
    ax.set_title(title, fontsize="medium")
    return fig


def overlay_figure(panels, note):
    """Every optimizer's path on each surface, one panel a surface, one colour an optimizer.

    Args:
        panels: ``(title, surface, start, paths)`` per surface; paths labelled by optimizer
            (the same label has the same colour in every panel).
        note: A line under the figure saying how the paths were chosen.
    """
    return _overlay(panels, note)[0]


def overlay_animation(panels, note, path, dpi=50, fps=8):
    """``overlay_figure`` as an animated GIF at ``path``: the paths grow epoch by epoch.

    Args:
        panels: As for ``overlay_figure``.
        note: As for ``overlay_figure``.
        path: The GIF file to write.
        dpi: Its resolution (50: about 600 x 450 pixels for four panels).
        fps: Epochs a second.
    """
    from matplotlib.animation import FuncAnimation, PillowWriter  # Pillow: only when animated

    fig, drawn = _overlay(panels, note)
    frames = max(len(xs) for _, _, xs, _ in drawn)

    def show(frame):
        for line, end, xs, ys in drawn:
            line.set_data(xs[: frame + 1], ys[: frame + 1])
            if end is not None:
                known = np.isfinite(xs[: frame + 1]) & np.isfinite(ys[: frame + 1])
                end.set_data(xs[: frame + 1][known][-1:], ys[: frame + 1][known][-1:])
        return []

    # The last epoch is held for a second before the GIF loops.
    FuncAnimation(fig, show, frames=[*range(frames), *[frames - 1] * fps]).save(
        path, writer=PillowWriter(fps=fps), dpi=dpi
    )


def _overlay(panels, note):
    """The overlay figure, and what ``draw_surface`` drew on it."""
    labels = list(dict.fromkeys(p.label.split(" ")[0] for _, _, _, paths in panels for p in paths))
    cmap = matplotlib.colormaps["tab10"]
    # Colour and line style: paths that coincide (Adam and AMSGrad often do) both stay visible.
    style = {
        label: {"color": cmap(i % cmap.N), "linestyle": LINESTYLES[i % len(LINESTYLES)]}
        for i, label in enumerate(labels)
    }
    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(5.0 * columns + 1.8, 4.2 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    drawn = []
    for ax, (title, surface, start, paths) in zip(axes, panels):
        drawn += draw_surface(ax, surface, paths, start, [style[p.label.split(" ")[0]] for p in paths])
        ax.set_title(title, fontsize="medium")
        ax.legend(fontsize="x-small", loc="best", framealpha=0.8)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("\n".join(textwrap.wrap(note, width=int(12 * fig.get_figwidth()))), fontsize="small")
    return fig, drawn


def literal(text):
    """A param as MLflow keeps it (a string) back as the value it was: ``"[-2.0, 2.0]"``."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def final_value(record):
    """The surface's value where the run ended: its last ``val_loss`` (the validation
    sample is the position itself); NaN when the run diverged or did not finish."""
    points = record.history.get("val_loss") or record.history.get("loss") or []
    if record.status != "FINISHED" or record.tags.get("diverged") == "true" or not points:
        return math.nan
    return float(points[-1][1])


def best_paths(records, key=RATE_KEY):
    """Per surface and optimizer, the run of the lowest final value over ``key`` (a
    diverged or unfinished run is never picked).

    Args:
        records: ``RunRecord`` objects with the histories of x, y and val_loss, tagged with
            their ``loss`` (surface) and ``optimizer`` choices.
        key: The param swept for each optimizer (its rate).

    Returns:
        {surface: {optimizer: record}}, in the records' order; an optimizer whose every
        run diverged has none.
    """
    best = {}
    for record in records:
        surface, optimizer = record.tags.get("loss", "?"), record.tags.get("optimizer", "?")
        group = best.setdefault(surface, {})
        value = final_value(record)
        if not math.isfinite(value):
            group.setdefault(optimizer, None)
            continue
        rank = (value, float(literal(record.params.get(key, "nan"))))  # a tie goes to the smaller rate
        current = group.get(optimizer)
        if current is None or rank < (final_value(current), float(literal(current.params.get(key, "nan")))):
            group[optimizer] = record
    return {s: {o: r for o, r in group.items() if r is not None} for s, group in best.items()}


def path_of(record, label):
    """The run's ``Walk``: its start (``model.start``) and its x, y after each epoch."""
    start = literal(record.params.get("model.start", "[nan, nan]"))
    xs = [start[0], *(v for _, v in record.history.get("x", []))]
    ys = [start[1], *(v for _, v in record.history.get("y", []))]
    return Walk(label, xs, ys, final_value(record))


def surface_of(record):
    """The run's surface, rebuilt from its recorded ``loss.fn.*`` params.

    Raises:
        ValueError: The recorded target is not a surface (a class with ``value``): a
            store's params name what is called here, so nothing else is.
    """
    from hydra.utils import get_object, instantiate  # imports the surface's module (Keras) only when drawn

    prefix = "loss.fn."
    spec = {k[len(prefix) :]: literal(v) for k, v in record.params.items() if k.startswith(prefix)}
    target = get_object(str(spec.get("_target_")))
    if not (isinstance(target, type) and callable(getattr(target, "value", None))):
        raise ValueError(f"loss.fn._target_ of run {record.run_id} is not a surface: {spec.get('_target_')}")
    return instantiate(spec, _convert_="all")


def sweep_overlay(records, key=RATE_KEY):
    """The sweep's figure: per surface, every optimizer's path at its best rate (``best_paths``).

    Args:
        records: The sweep's children, with the histories of x, y and val_loss.
        key: The param swept for each optimizer.

    Returns:
        A Figure, or None when no run logged x and y.
    """
    drawn = sweep_panels(records, key)
    return overlay_figure(*drawn) if drawn else None


def sweep_panels(records, key=RATE_KEY):
    """What ``sweep_overlay`` draws: (panels, note) for ``overlay_figure`` and
    ``overlay_animation``, or None when no run logged x and y."""
    walked = [r for r in records if r.history.get("x") and r.history.get("y")]
    panels = []
    for surface, chosen in best_paths(walked, key).items():
        if not chosen:
            continue
        first = next(iter(chosen.values()))
        paths = [
            path_of(r, f"{o} ({float(literal(r.params.get(key, 'nan'))):g}): {final_value(r):.3g}")
            for o, r in chosen.items()
        ]
        start = literal(first.params.get("model.start"))
        panels.append((f"{surface}, from ({start[0]:g}, {start[1]:g})", surface_of(first), start, paths))
    if not panels:
        return None
    rates = sorted({float(literal(r.params.get(key, "nan"))) for r in walked})
    steps = {
        int(literal(r.params.get("trainer.epochs", "0"))) * int(literal(r.params.get("data.steps_per_epoch", "0")))
        for r in walked
    }
    clipped = {r.params.get(f"optimizer.{c}") for r in walked for c in ("clipnorm", "clipvalue", "global_clipnorm")}
    note = (
        f"Each optimizer at its rate tuned on the grid {', '.join(f'{v:g}' for v in rates)} (the same for every "
        f"optimizer), picked by the lowest final value (diverged runs never picked); legend: optimizer (rate): "
        f"final value. {' or '.join(f'{s:,}' for s in sorted(steps))} steps each, gradients "
        f"{'unclipped' if clipped <= {None, 'None'} else 'clipped as configured'}."
    )
    return panels, note
