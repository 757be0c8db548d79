# Run by every Python kernel the code interpreter starts (pykernel.py), in a
# namespace of its own, before any of the user's code. It adds two display
# formats that E2B's SDKs read:
#
#   e2b/chart  a matplotlib Figure as the chart types of @e2b/code-interpreter
#              (line, scatter, bar, pie, box_and_whisker, superchart)
#   e2b/data   a pandas DataFrame's columns, as lists of JSON values
#
# Both are looked up by type name, so neither matplotlib nor pandas is
# imported until the user's code imports them. The user's namespace stays
# as IPython makes it.


def _sbx_setup():
    import math
    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    def clean(v):
        """A JSON-safe value: numbers as float/int (NaN and inf as None),
        datetimes as ISO strings, anything else as str."""
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return v
        try:
            f = float(v)
        except (TypeError, ValueError):
            if hasattr(v, "isoformat"):
                return v.isoformat()
            return str(v)
        if math.isnan(f) or math.isinf(f):
            return None
        if f.is_integer() and not isinstance(v, float) and "float" not in type(v).__name__:
            return int(f)
        return f

    class DictFormatter(BaseFormatter):
        _return_type = (dict, list)

    class ChartFormatter(DictFormatter):
        format_type = Unicode("e2b/chart")
        print_method = ObjectName("_repr_e2b_chart_")

        # Not registered with for_type: enabling matplotlib's inline
        # backend removes every formatter's printer for Figure.
        def __call__(self, obj):
            if self.enabled:
                for cls in type(obj).__mro__:
                    if cls.__module__ == "matplotlib.figure" and cls.__name__ == "Figure":
                        return guarded(figure_chart)(obj)
            return super().__call__(obj)

    class DataFormatter(DictFormatter):
        format_type = Unicode("e2b/data")
        print_method = ObjectName("_repr_e2b_data_")

    def tick_labels(labels):
        return [t.get_text() for t in labels]

    def axis_info(ax, which):
        axis = ax.xaxis if which == "x" else ax.yaxis
        scale = axis.get_scale()
        try:
            import matplotlib.dates as mdates

            if isinstance(axis.get_major_formatter(), (mdates.AutoDateFormatter, mdates.ConciseDateFormatter, mdates.DateFormatter)):
                scale = "datetime"
        except Exception:
            pass
        ticks = axis.get_ticklocs()
        labels = tick_labels(axis.get_ticklabels())
        return scale, [clean(t) for t in ticks], labels

    def point(v, scale):
        if scale == "datetime":
            import matplotlib.dates as mdates

            try:
                return mdates.num2date(float(v)).isoformat()
            except Exception:
                return clean(v)
        return clean(v)

    def label_of(artist):
        label = artist.get_label() or ""
        return "" if label.startswith("_") else label

    def common(ax, kind):
        c = {"type": kind, "title": ax.get_title()}
        c["x_label"] = ax.get_xlabel() or None
        c["y_label"] = ax.get_ylabel() or None
        c["x_unit"] = None
        c["y_unit"] = None
        return c

    def point_chart(ax, kind, elements):
        c = common(ax, kind)
        xs, xt, xl = axis_info(ax, "x")
        ys, yt, yl = axis_info(ax, "y")
        c.update({"x_scale": xs, "x_ticks": xt, "x_tick_labels": xl,
                  "y_scale": ys, "y_ticks": yt, "y_tick_labels": yl})
        for e in elements:
            e["points"] = [[point(x, xs), point(y, ys)] for x, y in e["points"]]
        c["elements"] = elements
        return c

    def box_chart(ax):
        """The box-and-whisker chart of ax.boxplot's artists, or None. A
        box is a closed 5-point outline (a line, or a patch with
        patch_artist=True); its median is the line across it, its
        whiskers the lines from its quartiles along its centre, its
        outliers the marker-only line on its centre."""
        from matplotlib.patches import PathPatch

        outlines = [(list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.get_lines()]
        outlines += [([v[0] for v in p.get_path().vertices[:5]], [v[1] for v in p.get_path().vertices[:5]])
                     for p in ax.patches if isinstance(p, PathPatch)]
        boxes = []
        for x, y in outlines:
            if len(x) < 5:
                continue
            x, y = [float(v) for v in x[:5]], [float(v) for v in y[:5]]
            if x[0] == x[3] == x[4] and x[1] == x[2] and y[0] == y[1] == y[4] and y[2] == y[3] and x[0] != x[1] and y[0] != y[2]:
                boxes.append((False, min(x[0], x[1]), max(x[0], x[1]), min(y[0], y[2]), max(y[0], y[2])))
            elif x[0] == x[1] == x[4] and x[2] == x[3] and y[0] == y[3] == y[4] and y[1] == y[2] and x[0] != x[2] and y[0] != y[1]:
                boxes.append((True, min(y[0], y[1]), max(y[0], y[1]), min(x[0], x[2]), max(x[0], x[2])))
        if not boxes:
            return None
        horizontal = boxes[0][0]
        # Every line as (along the box's width, along its values).
        segs = []
        for ln in ax.get_lines():
            a, v = [float(t) for t in ln.get_xdata()], [float(t) for t in ln.get_ydata()]
            if horizontal:
                a, v = v, a
            segs.append((a, v, ln.get_linestyle() in ("None", "none", "", " ")))
        labels = tick_labels(ax.get_yticklabels() if horizontal else ax.get_xticklabels())
        locs = list(ax.get_yticks() if horizontal else ax.get_xticks())
        elements = []
        for _, lo, hi, q1, q3 in boxes:
            c = (lo + hi) / 2
            near = lambda t: abs(t - c) <= (hi - lo) * 1e-6 + 1e-12
            median, mn, mx, outliers = None, q1, q3, []
            for a, v, markers in segs:
                if markers and a and all(near(t) for t in a):
                    outliers = [clean(t) for t in v]
                elif len(a) == 2 and not markers and near(a[0]) and near(a[1]):
                    end = v[1] if v[0] in (q1, q3) else v[0]  # a whisker: quartile → end
                    mn, mx = min(mn, end), max(mx, end)
                elif len(a) == 2 and v[0] == v[1] and min(a) == lo and max(a) == hi and q1 <= v[0] <= q3:
                    median = v[0]
            label = ""
            if locs:
                i = min(range(len(locs)), key=lambda j: abs(locs[j] - c))
                if i < len(labels):
                    label = labels[i]
            elements.append({"label": label or str(clean(c)), "min": clean(mn), "first_quartile": clean(q1),
                             "median": clean(median), "third_quartile": clean(q3), "max": clean(mx), "outliers": outliers})
        ch = common(ax, "box_and_whisker")
        if horizontal:
            ch["x_label"], ch["y_label"] = ch["y_label"], ch["x_label"]
        ch["elements"] = elements
        return ch

    def ax_chart(ax):
        from matplotlib.collections import PathCollection
        from matplotlib.container import BarContainer
        from matplotlib.patches import Wedge

        box = box_chart(ax)
        if box is not None:
            return box
        wedges = [p for p in ax.patches if isinstance(p, Wedge)]
        if wedges:
            c = {"type": "pie", "title": ax.get_title()}
            c["elements"] = [{"label": label_of(w), "angle": clean(abs(w.theta2 - w.theta1)), "radius": clean(w.r)} for w in wedges]
            return c
        bars = [b for b in ax.containers if isinstance(b, BarContainer)]
        if bars:
            c = common(ax, "bar")
            horizontal = bars[0].orientation == "horizontal" if hasattr(bars[0], "orientation") else False
            if horizontal:
                c["x_label"], c["y_label"] = c["y_label"], c["x_label"]
            labels = tick_labels(ax.get_yticklabels() if horizontal else ax.get_xticklabels())
            locs = list(ax.get_yticks() if horizontal else ax.get_xticks())
            elements = []
            for group in bars:
                for rect in group.patches:
                    if horizontal:
                        center, value = rect.get_y() + rect.get_height() / 2, rect.get_width()
                    else:
                        center, value = rect.get_x() + rect.get_width() / 2, rect.get_height()
                    label = ""
                    if locs:
                        i = min(range(len(locs)), key=lambda j: abs(locs[j] - center))
                        if i < len(labels):
                            label = labels[i]
                    elements.append({"label": label or str(clean(center)), "value": clean(value), "group": label_of(group)})
            c["elements"] = elements
            return c
        scatters = [col for col in ax.collections if isinstance(col, PathCollection)]
        lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 0]
        if scatters and not lines:
            return point_chart(ax, "scatter", [{"label": label_of(s), "points": [tuple(o) for o in s.get_offsets()]} for s in scatters])
        if lines:
            return point_chart(ax, "line", [{"label": label_of(ln), "points": list(zip(ln.get_xdata(), ln.get_ydata()))} for ln in lines])
        if ax.has_data():
            return {"type": "unknown", "title": ax.get_title(), "elements": []}
        return None

    def figure_chart(fig):
        charts = [c for c in (ax_chart(ax) for ax in fig.axes) if c is not None]
        if not charts:
            return None
        if len(charts) == 1:
            return charts[0]
        title = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
        return {"type": "superchart", "title": title, "elements": charts}

    def frame_data(df):
        import json

        return {str(col): json.loads(df[col].to_json(orient="values", date_format="iso")) for col in df.columns}

    def guarded(f):
        def g(obj):
            try:
                return f(obj)
            except Exception:
                return None  # a chart the extractor does not know: no e2b/chart
        return g

    ip = get_ipython()
    df = ip.display_formatter
    chart = ChartFormatter(parent=df)
    data = DataFormatter(parent=df)
    data.for_type_by_name("pandas.core.frame", "DataFrame", guarded(frame_data))
    df.formatters[chart.format_type] = chart
    df.formatters[data.format_type] = data


_sbx_setup()
del _sbx_setup

