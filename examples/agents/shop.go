package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentcache/agentcache-go/agentcache"
	"github.com/agentcache/agentcache-go/scope"
)

// shop is the pretend backend every instance of the application talks to:
// a weather API, a cart database, an order service, a document search and a
// notes store. Its tools are plain functions with simulated latency; they
// know nothing about caching. It is shared by both instances, as a real
// database would be.
type shop struct {
	mu     sync.Mutex          // guards everything below
	rng    *rand.Rand          // latencies, reproducible with -seed
	carts  map[string][]string // user ID → items
	orders map[string]map[string]Order
	notes  map[string][]string // session ID → notes
}

func newShop(seed uint64) *shop {
	return &shop{
		rng: rand.New(rand.NewPCG(seed, 0x5eed)),
		carts: map[string][]string{
			aliceID: {"travel adapter"},
			bobID:   {"running shoes", "water bottle"},
		},
		orders: map[string]map[string]Order{
			aliceID: {"A-1001": {ID: "A-1001", Status: "shipped", ETA: "Thursday"}},
			bobID:   {"B-2001": {ID: "B-2001", Status: "delivered"}},
		},
		notes: map[string][]string{
			aliceSession: {"prefers rail to flights", "budget 200 EUR"},
			bobSession:   {"training for a marathon"},
		},
	}
}

// work simulates a tool's I/O: a latency drawn from [lo, hi).
func (s *shop) work(ctx context.Context, lo, hi time.Duration) error {
	s.mu.Lock()
	d := lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
	s.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Tool arguments and results. Results travel through L2 as JSON.
type (
	WeatherArgs struct {
		City string `json:"city"`
	}
	Forecast struct {
		City    string `json:"city"`
		TempC   int    `json:"temp_c"`
		Summary string `json:"summary"`
	}
	NoArgs struct{}
	Cart   struct {
		Items []string `json:"items"`
	}
	AddArgs struct {
		Item string `json:"item"`
	}
	SearchArgs struct {
		Query string `json:"query"`
	}
	SearchResult struct {
		Hits []string `json:"hits"`
	}
	OrderArgs struct {
		ID string `json:"order_id"`
	}
	Order struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		ETA    string `json:"eta,omitempty"`
	}
	Notes struct {
		Lines []string `json:"lines"`
	}
)

// getWeather is a fast public API: the same answer for everyone.
func (s *shop) getWeather(ctx context.Context, a WeatherArgs) (Forecast, error) {
	if err := s.work(ctx, 3*time.Millisecond, 8*time.Millisecond); err != nil {
		return Forecast{}, err
	}
	h := fnv.New32a()
	h.Write([]byte(a.City))
	v := h.Sum32()
	skies := []string{"sunny", "light rain", "cloudy", "windy"}
	return Forecast{City: a.City, TempC: 8 + int(v%18), Summary: skies[v/18%4]}, nil
}

// getCart reads the caller's cart from the database.
func (s *shop) getCart(ctx context.Context, _ NoArgs) (Cart, error) {
	user, err := scope.ID(ctx, scope.User)
	if err != nil {
		return Cart{}, err
	}
	if err := s.work(ctx, 15*time.Millisecond, 30*time.Millisecond); err != nil {
		return Cart{}, err
	}
	return Cart{Items: s.cartOf(user)}, nil
}

// cartOf is the database's truth, read without a tool call: the demo uses it
// to flag a cached cart that no longer matches.
func (s *shop) cartOf(user string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.carts[user])
}

// addToCart writes to the caller's cart: the mutation.
func (s *shop) addToCart(ctx context.Context, a AddArgs) (Cart, error) {
	user, err := scope.ID(ctx, scope.User)
	if err != nil {
		return Cart{}, err
	}
	if err := s.work(ctx, 20*time.Millisecond, 40*time.Millisecond); err != nil {
		return Cart{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.carts[user] = append(s.carts[user], a.Item)
	return Cart{Items: slices.Clone(s.carts[user])}, nil
}

// searchDocs is the slow one: a vector search over the help centre.
func (s *shop) searchDocs(ctx context.Context, a SearchArgs) (SearchResult, error) {
	if err := s.work(ctx, 50*time.Millisecond, 200*time.Millisecond); err != nil {
		return SearchResult{}, err
	}
	var hits []string
	for _, d := range helpCentre {
		for w := range strings.FieldsSeq(strings.ToLower(a.Query)) {
			if len(w) > 3 && strings.Contains(strings.ToLower(d), w) {
				hits = append(hits, d)
				break
			}
		}
	}
	return SearchResult{Hits: hits}, nil
}

var helpCentre = []string{
	"Returns: you can return any item within 30 days",
	"Return shipping is free for orders over 50 EUR",
	"Shipping to Portugal takes 3 to 5 working days",
	"Shipping costs depend on the parcel's weight",
	"Gift cards cannot be returned",
}

// getOrder looks an order up. Agents like to guess order IDs; a guess that
// matches nothing is agentcache.ErrNotFound, which the cache remembers.
func (s *shop) getOrder(ctx context.Context, a OrderArgs) (Order, error) {
	user, err := scope.ID(ctx, scope.User)
	if err != nil {
		return Order{}, err
	}
	if err := s.work(ctx, 20*time.Millisecond, 40*time.Millisecond); err != nil {
		return Order{}, err
	}
	s.mu.Lock()
	o, ok := s.orders[user][a.ID]
	s.mu.Unlock()
	if !ok {
		return Order{}, fmt.Errorf("order %s: %w", a.ID, agentcache.ErrNotFound)
	}
	return o, nil
}

// sessionNotes reads the agent's scratchpad for the current conversation.
func (s *shop) sessionNotes(ctx context.Context, _ NoArgs) (Notes, error) {
	sess, err := scope.ID(ctx, scope.Session)
	if err != nil {
		return Notes{}, err
	}
	if err := s.work(ctx, 5*time.Millisecond, 15*time.Millisecond); err != nil {
		return Notes{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return Notes{Lines: slices.Clone(s.notes[sess])}, nil
}
