package serve

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/neurstore/neurstore/runtime"
)

// metrics are the server's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg *prometheus.Registry

	requests      *prometheus.CounterVec   // model, code
	errors        *prometheus.CounterVec   // model, code
	latency       *prometheus.HistogramVec // model
	batchRows     *prometheus.HistogramVec // model
	batchRequests *prometheus.HistogramVec // model
	crossRuns     prometheus.Counter       // runs that joined several models' requests
	queueDepth    *prometheus.GaugeVec     // model
	loads         prometheus.Counter
	evictions     prometheus.Counter
}

// unknownModel is the model label of requests for no known model, so that
// clients cannot grow the label set with made-up names.
const unknownModel = ""

func newMetrics(cache func() runtime.CacheStats, loaded func() (int, int64)) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "neurstore_inference_requests_total",
			Help: "Inference requests answered, by model and HTTP status code.",
		}, []string{"model", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "neurstore_inference_errors_total",
			Help: "Inference requests answered with an error status (>= 400), by model and HTTP status code.",
		}, []string{"model", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "neurstore_inference_duration_seconds",
			Help:    "Time from receiving an inference request to its answer, by model.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5ms .. 16s
		}, []string{"model"}),
		batchRows: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "neurstore_batch_size",
			Help:    "Rows (first-dimension entries) per model run, by model.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 .. 1024
		}, []string{"model"}),
		batchRequests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "neurstore_batch_requests",
			Help:    "Requests served per model run, by model.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}, []string{"model"}),
		crossRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "neurstore_cross_model_runs_total",
			Help: "Runs that joined requests for several fine-tunes of one base (base product computed once).",
		}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "neurstore_queue_depth",
			Help: "Inference requests waiting in a loaded model's queue.",
		}, []string{"model"}),
		loads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "neurstore_model_loads_total",
			Help: "Models loaded.",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "neurstore_model_evictions_total",
			Help: "Idle models unloaded to keep the loaded weights within the memory budget.",
		}),
	}
	m.reg.MustRegister(m.requests, m.errors, m.latency, m.batchRows, m.batchRequests, m.crossRuns, m.queueDepth, m.loads, m.evictions,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "neurstore_loaded_models",
			Help: "Models loaded in memory.",
		}, func() float64 { n, _ := loaded(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "neurstore_loaded_weight_bytes",
			Help: "Weight bytes held by the loaded models (shared bases excluded).",
		}, func() float64 { _, b := loaded(); return float64(b) }),
		cacheCollector{cache},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// cacheCollector reports the base cache's counters at each scrape.
type cacheCollector struct{ stats func() runtime.CacheStats }

var (
	cacheHits   = prometheus.NewDesc("neurstore_base_cache_hits_total", "Base tensor cache hits.", nil, nil)
	cacheMisses = prometheus.NewDesc("neurstore_base_cache_misses_total", "Base tensor cache misses.", nil, nil)
	cacheBytes  = prometheus.NewDesc("neurstore_base_cache_bytes", "Bytes of base tensors held by the cache.", nil, nil)
	cacheMax    = prometheus.NewDesc("neurstore_base_cache_max_bytes", "The base cache's budget in bytes.", nil, nil)
)

func (c cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cacheHits
	ch <- cacheMisses
	ch <- cacheBytes
	ch <- cacheMax
}

func (c cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(cacheHits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(cacheMisses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(cacheBytes, prometheus.GaugeValue, float64(s.Bytes))
	ch <- prometheus.MustNewConstMetric(cacheMax, prometheus.GaugeValue, float64(s.MaxBytes))
}
