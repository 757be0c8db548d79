package wire

// Error is E2B's error body, sent with every status of 400 and above.
type Error struct {
	// Code repeats the HTTP status.
	Code int `json:"code"`
	// Message is safe to show to a user.
	Message string `json:"message"`
}

// Health is GET /health: "ok", or "starting" with status 503.
type Health struct {
	Status string `json:"status"`
}
