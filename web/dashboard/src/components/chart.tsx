import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  label: string;
  color: string;
  fmt?: (v: number) => string;
}

/**
 * Chart draws time series with uPlot: x is unix seconds, ys one array per
 * series. Sized to its container's width.
 */
export function Chart({
  title,
  x,
  ys,
  series,
  height = 200,
  bars = false,
  yRange,
}: {
  title: string;
  x: number[];
  ys: number[][];
  series: Series[];
  height?: number;
  bars?: boolean;
  yRange?: [number, number];
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const el = box.current!;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      scales: { x: { time: true }, y: yRange ? { range: yRange } : { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        { stroke: "currentColor", grid: { stroke: "rgba(128,128,128,0.2)" } },
        {
          stroke: "currentColor",
          grid: { stroke: "rgba(128,128,128,0.2)" },
          size: 90,
          values: (_u, vals) => vals.map((v) => (series[0].fmt ? series[0].fmt(v) : String(v))),
        },
      ],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          fill: s.color + "33",
          width: 2,
          value: (_u: uPlot, v: number | null) => (v == null ? "–" : s.fmt ? s.fmt(v) : v.toFixed(1)),
          paths: bars ? uPlot.paths.bars!({ size: [0.6, 40] }) : undefined,
        })),
      ],
    };
    plot.current = new uPlot(opts, [x, ...ys], el);
    const ro = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(200, el.clientWidth), height }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
    // The series shape is fixed per chart; data changes go through setData.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [series.length, bars]);
  useEffect(() => {
    plot.current?.setData([x, ...ys]);
  }, [x, ys]);
  return (
    <figure class="chart" data-points={x.length}>
      <figcaption>{title}</figcaption>
      <div ref={box} role="img" aria-label={`${title}: ${x.length} samples`} />
    </figure>
  );
}
