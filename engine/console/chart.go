package console

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/proactived/proactived/engine/report"
)

// chart is a horizontal bar chart of contact rates with 95% interval
// whiskers, laid out on the server so it draws as plain inline SVG: no
// script, no library. Horizontal positions are percentages of the SVG's
// width and vertical ones pixels, so the chart fills a laptop card or a
// phone screen with its text at the same, readable size.
type chart struct {
	Height float64 // px
	// Bottom is where the bars end and the axis labels begin (px).
	Top, Bottom float64
	Rows        []chartRow
	Ticks       []chartTick
	// Label describes the chart for screen readers (role="img").
	Label string
}

type chartRow struct {
	Label string // "notified", "held out"
	Sub   string // "1829 entities"
	Class string // CSS class: treated | control | notified | other
	// LabelY is the label's baseline; the bar spans Y..Y+H, MidY is its
	// centre (px).
	LabelY, Y, H, MidY float64
	// BarW is the bar's width (% of the chart); zero draws nothing.
	BarW float64
	// The whisker, when HasCI, spans LoX..HiX (%).
	HasCI    bool
	LoX, HiX float64
	// Value is the printed rate, at ValueX (%; right of the bar or the
	// whisker).
	Value  string
	ValueX float64
}

type chartTick struct {
	X     float64 // %
	Label string
	// Anchor keeps the first and last labels inside the chart.
	Anchor string
}

// rateRow is one bar of a chart: a share (0..1) with its interval.
type rateRow struct {
	label, sub, class string
	rate              report.Estimate
}

// Layout: the plot takes the left chartPlot% of the width (the rest holds
// the value labels); each row is a label line above its bar (px).
const (
	chartPlot  = 84.0
	chartRowH  = 50.0
	chartBarH  = 18.0
	chartLabel = 14.0 // label baseline below the row's top
	chartGap   = 6.0  // label baseline to bar
	chartAxisH = 22.0
	chartTop   = 4.0
)

// rateChart lays out rows of rates on one axis from 0 to a round
// maximum above every interval.
func rateChart(label string, rows []rateRow) chart {
	c := chart{Top: chartTop, Label: label}
	top := 0.0
	for _, r := range rows {
		for _, v := range []report.Num{r.rate.Value, r.rate.High} {
			if v.Valid() {
				top = math.Max(top, float64(v))
			}
		}
	}
	limit, step := niceScale(top)
	x := func(v float64) float64 { return chartPlot * math.Min(math.Max(v/limit, 0), 1) }
	for i, r := range rows {
		y := chartTop + float64(i)*chartRowH
		row := chartRow{Label: r.label, Sub: r.sub, Class: r.class, LabelY: y + chartLabel, Y: y + chartLabel + chartGap, H: chartBarH}
		row.MidY = row.Y + chartBarH/2
		if v := r.rate.Value; v.Valid() {
			row.BarW = x(float64(v))
			row.Value = pct(v)
			row.ValueX = row.BarW
		} else {
			row.Value = "no data"
		}
		if r.rate.Low.Valid() && r.rate.High.Valid() {
			row.HasCI = true
			row.LoX, row.HiX = x(float64(r.rate.Low)), x(float64(r.rate.High))
			row.ValueX = math.Max(row.ValueX, row.HiX)
		}
		c.Rows = append(c.Rows, row)
	}
	c.Bottom = chartTop + float64(len(rows))*chartRowH
	c.Height = c.Bottom + chartAxisH
	for i := 0; float64(i)*step <= limit+step/2; i++ {
		v := float64(i) * step
		t := chartTick{X: x(v), Label: tickLabel(v, step), Anchor: "middle"}
		if i == 0 {
			t.Anchor = "start"
		}
		c.Ticks = append(c.Ticks, t)
	}
	return c
}

// niceScale rounds top up to a short axis: a maximum and a tick step of
// 1, 2 or 5 × 10ⁿ, with four or five ticks. Rates never shown above 100%.
func niceScale(top float64) (limit, step float64) {
	if top <= 0 || math.IsNaN(top) {
		return 0.1, 0.025
	}
	top = math.Min(top, 1)
	raw := top / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if step = m * mag; step >= raw {
			break
		}
	}
	limit = math.Ceil(top/step-1e-9) * step
	if limit < top {
		limit += step
	}
	return math.Min(limit, 1), step
}

func tickLabel(v, step float64) string {
	// As many decimals as the step needs: 25% → 0, 2.5% → 1, 0.25% → 2.
	dec := 0
	for p := step * 100; dec < 3 && math.Abs(p-math.Round(p)) > 1e-9; p *= 10 {
		dec++
	}
	return strconv.FormatFloat(100*v, 'f', dec, 64) + "%"
}

// Number formatting shared by the templates.

func pct(n report.Num) string {
	if !n.Valid() {
		return "–"
	}
	return fixed(100*float64(n), 1) + "%"
}

// points prints a difference of rates in percentage points.
func points(n report.Num) string {
	if !n.Valid() {
		return "–"
	}
	return fixed(100*float64(n), 1)
}

func whole(n report.Num) string {
	if !n.Valid() {
		return "–"
	}
	return fixed(float64(n), 0)
}

func num1(n report.Num) string {
	if !n.Valid() {
		return "–"
	}
	return fixed(float64(n), 1)
}

// fixed formats with prec decimals and a real minus sign, without "-0".
func fixed(f float64, prec int) string {
	s := strconv.FormatFloat(f, 'f', prec, 64)
	if strings.Trim(s, "-0.") == "" {
		return strings.TrimPrefix(s, "-")
	}
	return strings.Replace(s, "-", "−", 1)
}

// interval prints "a to b" with f, "–" when there is none.
func interval(e report.Estimate, f func(report.Num) string) string {
	if !e.Low.Valid() || !e.High.Valid() {
		return "–"
	}
	return f(e.Low) + " to " + f(e.High)
}

// dataNum is a number for a data-* attribute: plain, six decimals at most,
// empty when it does not exist (tests compare these with the API).
func dataNum(n report.Num) string {
	if !n.Valid() {
		return ""
	}
	return strconv.FormatFloat(math.Round(float64(n)*1e6)/1e6, 'f', -1, 64)
}

// svgNum prints a coordinate compactly.
func svgNum(f float64) string { return strconv.FormatFloat(math.Round(f*10)/10, 'f', -1, 64) }

// rateLabel describes one rate for screen readers.
func rateLabel(name string, n, contacted int, e report.Estimate) string {
	if !e.Value.Valid() {
		return fmt.Sprintf("%s: no entities", name)
	}
	return fmt.Sprintf("%s: %d of %d contacted support, %s (95%% CI %s)", name, contacted, n, pct(e.Value), interval(e, pct))
}

func nanValue() float64 { return math.NaN() }
