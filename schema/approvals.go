package schema

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/uptrace/bun"
)

// Ticket statuses.
const (
	TicketPending   = "pending"
	TicketApproved  = "approved"
	TicketRejected  = "rejected"
	TicketExpired   = "expired"
	TicketWithdrawn = "withdrawn"
)

// Decisions, as recorded. Approve and reject are votes; the others are
// what the ticket's timers and requester did.
const (
	DecisionApprove  = "approve"
	DecisionReject   = "reject"
	DecisionEscalate = "escalate"
	DecisionWithdraw = "withdraw"
)

// Level rules and timeout actions.
const (
	RuleAny    = "any"
	RuleAll    = "all"
	RuleQuorum = "quorum"

	OnTimeoutEscalate = "escalate"
	OnTimeoutReject   = "reject"
	OnTimeoutApprove  = "approve"
	OnTimeoutExpire   = "expire"
)

// ApproverSet names approvers: users, every user holding a role, and the
// members of groups.
type ApproverSet struct {
	Users  []string `json:"users,omitempty"`
	Roles  []string `json:"roles,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// ApprovalLevel is one step of a policy.
type ApprovalLevel struct {
	Name string `json:"name,omitempty"`
	ApproverSet
	Rule   string `json:"rule"`             // any, all or quorum
	Quorum int    `json:"quorum,omitempty"` // approvals a quorum needs
	// Timeout (a Go duration) bounds the wait; OnTimeout says what then:
	// escalate (add EscalateTo, notify them, wait once more, then
	// expire), reject, approve, or expire (the default).
	Timeout    string      `json:"timeout,omitempty"`
	OnTimeout  string      `json:"on_timeout,omitempty"`
	EscalateTo ApproverSet `json:"escalate_to,omitzero"`
}

// ApprovalMatch says which operations a policy gates: a batch job whose
// targets include a host matching a CMDB selector (e.g. env=prod), or
// whose script version was flagged by a high-risk rule with action
// approval (ScriptRisk "approval"). Either matching gates the job.
type ApprovalMatch struct {
	Targets    string `json:"targets,omitempty"`
	ScriptRisk string `json:"script_risk,omitempty"`
}

// ApprovalPolicySpec is what a policy decides with.
type ApprovalPolicySpec struct {
	// Match, if set, makes the policy gate the batch jobs it matches.
	Match  *ApprovalMatch  `json:"match,omitempty"`
	Levels []ApprovalLevel `json:"levels"`
	// Channels notify approvers: web (the inbox, always), slack,
	// dingtalk, wecom, feishu, email.
	Channels []string `json:"channels,omitempty"`
}

// Channels approvals know.
var ApprovalChannels = []string{"web", "slack", "dingtalk", "wecom", "feishu", "email"}

// MaxApprovalLevels bounds a policy.
const MaxApprovalLevels = 10

// Check validates a spec; field names are relative to the spec.
func (p *ApprovalPolicySpec) Check() *ValidationError {
	bad := fieldBag{}
	if len(p.Levels) == 0 || len(p.Levels) > MaxApprovalLevels {
		bad.add("levels", "give 1 to "+strconv.Itoa(MaxApprovalLevels)+" levels")
	}
	for i, lv := range p.Levels {
		f := fmt.Sprintf("levels[%d].", i)
		if len(lv.Users) == 0 && len(lv.Roles) == 0 && len(lv.Groups) == 0 {
			bad.add(f+"users", "name approvers: users, roles or groups")
		}
		for _, r := range append(slices.Clone(lv.Roles), lv.EscalateTo.Roles...) {
			if !ValidRole(r) {
				bad.add(f+"roles", strconv.Quote(r)+" is not a role")
			}
		}
		switch lv.Rule {
		case RuleAny, RuleAll:
			if lv.Quorum != 0 {
				bad.add(f+"quorum", "only a quorum rule takes a quorum")
			}
		case RuleQuorum:
			if lv.Quorum < 1 {
				bad.add(f+"quorum", "must be at least 1")
			} else if len(lv.Roles) == 0 && len(lv.Groups) == 0 && lv.Quorum > len(lv.Users) {
				bad.add(f+"quorum", fmt.Sprintf("%d approvals from %d users can never happen", lv.Quorum, len(lv.Users)))
			}
		default:
			bad.add(f+"rule", "must be any, all or quorum")
		}
		if lv.Timeout != "" {
			if d, err := time.ParseDuration(lv.Timeout); err != nil || d < time.Second {
				bad.add(f+"timeout", "must be a duration such as 4h, at least 1s")
			}
		}
		switch lv.OnTimeout {
		case "", OnTimeoutExpire, OnTimeoutReject, OnTimeoutApprove:
		case OnTimeoutEscalate:
			if len(lv.EscalateTo.Users) == 0 && len(lv.EscalateTo.Roles) == 0 && len(lv.EscalateTo.Groups) == 0 {
				bad.add(f+"escalate_to", "escalation needs approvers to add")
			}
		default:
			bad.add(f+"on_timeout", "must be escalate, reject, approve or expire")
		}
		if lv.OnTimeout != "" && lv.Timeout == "" {
			bad.add(f+"timeout", "on_timeout needs a timeout")
		}
	}
	if m := p.Match; m != nil {
		if m.Targets == "" && m.ScriptRisk == "" {
			bad.add("match", "give targets (a CMDB selector) or script_risk")
		}
		if m.Targets != "" {
			if err := ValidateSelector(m.Targets); err != nil {
				bad.add("match.targets", err.Error())
			}
		}
		if m.ScriptRisk != "" && m.ScriptRisk != RiskApproval {
			bad.add("match.script_risk", "must be approval")
		}
	}
	for i, c := range p.Channels {
		if !slices.Contains(ApprovalChannels, c) {
			bad.add(fmt.Sprintf("channels[%d]", i), "must be one of "+fmt.Sprint(ApprovalChannels))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &ValidationError{Fields: bad}
}

// ApprovalPolicy is an admin-defined policy.
type ApprovalPolicy struct {
	bun.BaseModel `bun:"table:approval_policies"`

	ID          int64              `bun:"id,pk,autoincrement" json:"id"`
	Name        string             `bun:"name" json:"name"`
	Description string             `bun:"description" json:"description"`
	Spec        ApprovalPolicySpec `bun:"spec,type:text" json:"spec"`
	CreatedBy   string             `bun:"created_by" json:"created_by"`
	CreatedAt   time.Time          `bun:"created_at" json:"created_at"`
	UpdatedAt   time.Time          `bun:"updated_at" json:"updated_at"`
}

// SaveApprovalPolicy creates p, or replaces the policy of that name.
func (s *Store) SaveApprovalPolicy(ctx context.Context, p *ApprovalPolicy) error {
	if ve := p.Spec.Check(); ve != nil {
		return ve
	}
	if !credNameRE.MatchString(p.Name) {
		return &ValidationError{Fields: map[string]string{"name": "must be 1-100 letters, digits, '.', '_' or '-'"}}
	}
	if err := s.checkManaged(ctx, s.DB, KindApprovalPolicy, p.Name); err != nil {
		return err
	}
	now := time.Now().UTC()
	p.CreatedAt, p.UpdatedAt = now, now
	_, err := s.DB.NewInsert().Model(p).On("CONFLICT (name) DO UPDATE").
		Set("description = EXCLUDED.description, spec = EXCLUDED.spec, updated_at = EXCLUDED.updated_at").
		Returning("id, created_at, created_by").Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: save approval policy %q: %w", p.Name, err)
	}
	return nil
}

// ApprovalPolicyByName returns the policy called name.
func (s *Store) ApprovalPolicyByName(ctx context.Context, name string) (*ApprovalPolicy, error) {
	p := new(ApprovalPolicy)
	if err := s.DB.NewSelect().Model(p).Where("name = ?", name).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: approval policy %q: %w", name, notFound(err))
	}
	return p, nil
}

// ApprovalPolicies lists policies by name.
func (s *Store) ApprovalPolicies(ctx context.Context) ([]ApprovalPolicy, error) {
	var ps []ApprovalPolicy
	if err := s.DB.NewSelect().Model(&ps).Order("name").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: approval policies: %w", err)
	}
	return ps, nil
}

// DeleteApprovalPolicy removes the policy called name. Open tickets keep
// their snapshot.
func (s *Store) DeleteApprovalPolicy(ctx context.Context, name string) error {
	if err := s.checkManaged(ctx, s.DB, KindApprovalPolicy, name); err != nil {
		return err
	}
	res, err := s.DB.NewDelete().Model((*ApprovalPolicy)(nil)).Where("name = ?", name).Exec(ctx)
	if err != nil {
		return fmt.Errorf("store: delete approval policy %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: delete approval policy %q: %w", name, ErrNotFound)
	}
	return nil
}

// Ticket is an approval ticket's read model.
type Ticket struct {
	bun.BaseModel `bun:"table:approval_tickets"`

	ID              int64              `bun:"id,pk,autoincrement" json:"id"`
	WorkflowID      string             `bun:"workflow_id" json:"workflow_id"`
	Title           string             `bun:"title" json:"title"`
	Description     string             `bun:"description" json:"description"`
	Requester       string             `bun:"requester" json:"requester"`
	GatedWorkflowID string             `bun:"gated_workflow_id" json:"gated_workflow_id,omitempty"`
	Risk            string             `bun:"risk" json:"risk,omitempty"`
	PolicyName      string             `bun:"policy_name" json:"policy_name"`
	Policy          ApprovalPolicySpec `bun:"policy,type:text" json:"policy"`
	Status          string             `bun:"status" json:"status"`
	Level           int                `bun:"level" json:"level"`
	Reason          string             `bun:"reason" json:"reason,omitempty"`
	CreatedAt       time.Time          `bun:"created_at" json:"created_at"`
	DecidedAt       *time.Time         `bun:"decided_at" json:"decided_at,omitempty"`

	Approvers []string                 `bun:"-" json:"approvers"`
	Decisions []ApprovalDecisionRecord `bun:"-" json:"decisions,omitempty"`
}

// ApprovalDecisionRecord is one entry of a ticket's decision history.
type ApprovalDecisionRecord struct {
	bun.BaseModel `bun:"table:approval_decisions"`

	TicketID   int64     `bun:"ticket_id,pk" json:"-"`
	Seq        int       `bun:"seq,pk" json:"seq"`
	Level      int       `bun:"level" json:"level"`
	Voter      string    `bun:"voter" json:"voter"`
	OnBehalfOf string    `bun:"on_behalf_of" json:"on_behalf_of,omitempty"`
	Decision   string    `bun:"decision" json:"decision"`
	Channel    string    `bun:"channel" json:"channel"`
	Comment    string    `bun:"comment" json:"comment,omitempty"`
	At         time.Time `bun:"at" json:"at"`
}

type ticketApprover struct {
	bun.BaseModel `bun:"table:approval_ticket_approvers"`
	TicketID      int64  `bun:"ticket_id,pk"`
	Username      string `bun:"username,pk"`
}

// CreateTicket records a new pending ticket.
func (s *Store) CreateTicket(ctx context.Context, t *Ticket) error {
	t.Status, t.CreatedAt = TicketPending, time.Now().UTC()
	if _, err := s.DB.NewInsert().Model(t).Returning("id").Exec(ctx); err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("store: create ticket %q: %w", t.WorkflowID, ErrConflict)
		}
		return fmt.Errorf("store: create ticket: %w", err)
	}
	return nil
}

// RecordTicket writes a ticket's state, the approvers of its current level
// and new decisions, in one transaction; a repeated call (a retried
// activity) writes nothing twice.
func (s *Store) RecordTicket(ctx context.Context, id int64, status string, level int, reason string, approvers []string, decisions []ApprovalDecisionRecord) error {
	return s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		q := tx.NewUpdate().Model((*Ticket)(nil)).Set("status = ?", status).Set("level = ?", level).Set("reason = ?", reason).Where("id = ?", id)
		if status != TicketPending {
			q = q.Set("decided_at = COALESCE(decided_at, ?)", time.Now().UTC())
		}
		if _, err := q.Exec(ctx); err != nil {
			return err
		}
		if _, err := tx.NewDelete().Model((*ticketApprover)(nil)).Where("ticket_id = ?", id).Exec(ctx); err != nil {
			return err
		}
		if status == TicketPending && len(approvers) > 0 {
			rows := make([]ticketApprover, len(approvers))
			for i, u := range approvers {
				rows[i] = ticketApprover{TicketID: id, Username: u}
			}
			if _, err := tx.NewInsert().Model(&rows).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
				return err
			}
		}
		if len(decisions) > 0 {
			for i := range decisions {
				decisions[i].TicketID = id
			}
			if _, err := tx.NewInsert().Model(&decisions).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	})
}

// Ticket returns ticket id with its current approvers and decisions.
func (s *Store) Ticket(ctx context.Context, id int64) (*Ticket, error) {
	t := new(Ticket)
	if err := s.DB.NewSelect().Model(t).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: ticket %d: %w", id, notFound(err))
	}
	if err := s.DB.NewSelect().Model((*ticketApprover)(nil)).Column("username").Where("ticket_id = ?", id).Order("username").Scan(ctx, &t.Approvers); err != nil {
		return nil, fmt.Errorf("store: ticket %d approvers: %w", id, err)
	}
	if err := s.DB.NewSelect().Model(&t.Decisions).Where("ticket_id = ?", id).Order("seq").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: ticket %d decisions: %w", id, err)
	}
	if t.Approvers == nil {
		t.Approvers = []string{}
	}
	return t, nil
}

// TicketQuery filters tickets. ToDecide lists pending tickets whose
// current level the user (or anyone in OnBehalfOf) may decide.
type TicketQuery struct {
	Status       string
	RequestedBy  string
	ToDecide     []string
	Since, Until time.Time // opened in [Since, Until)
	Q            string    // searches the title
	After        int64     // id cursor, newest first: ids below After
	Sort, Order  string    // see Page
	Cursor       string
	Limit        int
}

// Tickets lists tickets, newest first.
func (s *Store) Tickets(ctx context.Context, q TicketQuery) ([]Ticket, error) {
	ts, _, err := s.ticketList(ctx, q, false)
	return ts, err
}

// Delegation lets To decide for From between StartsAt and EndsAt.
type Delegation struct {
	bun.BaseModel `bun:"table:approval_delegations"`

	ID        int64     `bun:"id,pk,autoincrement" json:"id"`
	From      string    `bun:"from_user" json:"from"`
	To        string    `bun:"to_user" json:"to"`
	StartsAt  time.Time `bun:"starts_at" json:"starts_at"`
	EndsAt    time.Time `bun:"ends_at" json:"ends_at"`
	CreatedAt time.Time `bun:"created_at" json:"created_at"`
}

// CreateDelegation records d; the delegate must be an existing user.
func (s *Store) CreateDelegation(ctx context.Context, d *Delegation) error {
	bad := fieldBag{}
	if d.To == d.From {
		bad.add("to", "cannot delegate to yourself")
	} else if _, err := s.UserByUsername(ctx, d.To); errors.Is(err, ErrNotFound) {
		bad.add("to", "no such user")
	} else if err != nil {
		return err
	}
	if !d.EndsAt.After(d.StartsAt) {
		bad.add("ends_at", "must be after starts_at")
	}
	if len(bad) > 0 {
		return &ValidationError{Fields: bad}
	}
	d.CreatedAt = time.Now().UTC()
	if _, err := s.DB.NewInsert().Model(d).Returning("id").Exec(ctx); err != nil {
		return fmt.Errorf("store: create delegation: %w", err)
	}
	return nil
}

// DelegatorsOf returns the users who have delegated to user at t.
func (s *Store) DelegatorsOf(ctx context.Context, user string, t time.Time) ([]string, error) {
	var from []string
	err := s.DB.NewSelect().Model((*Delegation)(nil)).Column("from_user").Distinct().
		Where("to_user = ? AND starts_at <= ? AND ends_at > ?", user, t, t).
		// A delegation lapses with its giver's right to decide.
		Where("from_user IN (SELECT username FROM users WHERE NOT disabled AND role <> ?)", RoleViewer).
		Order("from_user").Scan(ctx, &from)
	if err != nil {
		return nil, fmt.Errorf("store: delegations to %s: %w", user, err)
	}
	return from, nil
}

// ResolveApprovers expands a set into the usernames of enabled users, in
// order, without repeats.
func (s *Store) ResolveApprovers(ctx context.Context, set ApproverSet) ([]string, error) {
	var users []User
	q := s.DB.NewSelect().Model(&users).Column("username").Where("NOT disabled").Order("username")
	q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
		q = q.Where("1 = 0")
		if len(set.Users) > 0 {
			q = q.WhereOr("username IN (?)", bun.In(set.Users))
		}
		if len(set.Roles) > 0 {
			q = q.WhereOr("role IN (?)", bun.In(set.Roles))
		}
		if len(set.Groups) > 0 {
			q = q.WhereOr("username IN (SELECT username FROM user_groups WHERE name IN (?))", bun.In(set.Groups))
		}
		return q
	})
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: resolve approvers: %w", err)
	}
	out := make([]string, len(users))
	for i, u := range users {
		out[i] = u.Username
	}
	return out, nil
}

// ResolveLevels resolves every level's approvers of spec for a ticket of
// requester. A level with nobody but the requester is ErrNoApprover,
// naming the level: such a ticket could never be decided.
func (s *Store) ResolveLevels(ctx context.Context, spec ApprovalPolicySpec, requester string) ([][]string, error) {
	out := make([][]string, 0, len(spec.Levels))
	for i, lv := range spec.Levels {
		users, err := s.ResolveApprovers(ctx, lv.ApproverSet)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(users, func(u string) bool { return u != requester }) {
			return nil, fmt.Errorf("level %d: %w", i+1, ErrNoApprover)
		}
		out = append(out, users)
	}
	return out, nil
}

// TicketByWorkflowID returns the ticket decided by workflow wid.
func (s *Store) TicketByWorkflowID(ctx context.Context, wid string) (*Ticket, error) {
	t := new(Ticket)
	if err := s.DB.NewSelect().Model(t).Column("id").Where("workflow_id = ?", wid).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: ticket %q: %w", wid, notFound(err))
	}
	return s.Ticket(ctx, t.ID)
}

// DeleteTicket removes a ticket whose workflow never started.
func (s *Store) DeleteTicket(ctx context.Context, id int64) error {
	_, err := s.DB.NewDelete().Model((*Ticket)(nil)).Where("id = ?", id).Exec(ctx)
	return err
}

// GatingPolicy returns the policy that gates a job running ver on hosts:
// the first, by name, whose match fits. None is (nil, nil).
func (s *Store) GatingPolicy(ctx context.Context, ver *ScriptVersion, hosts []JobHost) (*ApprovalPolicy, error) {
	ps, err := s.ApprovalPolicies(ctx)
	if err != nil {
		return nil, err
	}
	for i := range ps {
		m := ps[i].Spec.Match
		if m == nil {
			continue
		}
		if m.ScriptRisk != "" && ver.Risk == m.ScriptRisk {
			return &ps[i], nil
		}
		if m.Targets == "" {
			continue
		}
		cis, err := s.ExportCIs(ctx, CIQuery{Type: "host", Selector: m.Targets})
		if err != nil {
			return nil, err
		}
		matched := make(map[string]bool, 2*len(cis))
		for _, ci := range cis {
			matched["id:"+strconv.FormatInt(ci.ID, 10)] = true
			matched["name:"+ci.Name] = true
			if a, _ := ci.Attributes["address"].(string); a != "" {
				matched["name:"+a] = true
			}
		}
		for _, h := range hosts {
			if (h.CIID != nil && matched["id:"+strconv.FormatInt(*h.CIID, 10)]) || matched["name:"+h.Address] {
				return &ps[i], nil
			}
		}
	}
	return nil, nil
}

// ApprovalLink is a single-use decision link.
type ApprovalLink struct {
	bun.BaseModel `bun:"table:approval_links"`

	TokenHash string     `bun:"token_hash,pk"`
	TicketID  int64      `bun:"ticket_id"`
	Decision  string     `bun:"decision"`
	ExpiresAt time.Time  `bun:"expires_at"`
	UsedAt    *time.Time `bun:"used_at"`
	UsedBy    string     `bun:"used_by"`
}

// CreateApprovalLink stores a link by the hash of its token.
func (s *Store) CreateApprovalLink(ctx context.Context, l *ApprovalLink) error {
	_, err := s.DB.NewInsert().Model(l).Exec(ctx)
	return err
}

// ReleaseApprovalLink undoes UseApprovalLink by user when their decision
// did not count (not an approver, already voted): the link stays for the
// approver it was meant for.
func (s *Store) ReleaseApprovalLink(ctx context.Context, hash, user string) error {
	_, err := s.DB.NewUpdate().Model((*ApprovalLink)(nil)).Set("used_at = NULL").Set("used_by = ''").
		Where("token_hash = ? AND used_by = ?", hash, user).Exec(ctx)
	return err
}

// ApprovalLinkByHash returns a link, used or not.
func (s *Store) ApprovalLinkByHash(ctx context.Context, hash string) (*ApprovalLink, error) {
	l := new(ApprovalLink)
	if err := s.DB.NewSelect().Model(l).Where("token_hash = ?", hash).Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: approval link: %w", notFound(err))
	}
	return l, nil
}

// UseApprovalLink marks a link used by user; false if it was used (or
// expired) already. Only one caller ever gets true.
func (s *Store) UseApprovalLink(ctx context.Context, hash, user string, now time.Time) (bool, error) {
	res, err := s.DB.NewUpdate().Model((*ApprovalLink)(nil)).Set("used_at = ?", now).Set("used_by = ?", user).
		Where("token_hash = ? AND used_at IS NULL AND expires_at > ?", hash, now).Exec(ctx)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// Delegations returns the delegations given by from that have not ended
// by now, soonest start first.
func (s *Store) Delegations(ctx context.Context, from string, now time.Time) ([]Delegation, error) {
	var ds []Delegation
	if err := s.DB.NewSelect().Model(&ds).Where("from_user = ? AND ends_at > ?", from, now).Order("starts_at", "id").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: delegations from %s: %w", from, err)
	}
	return ds, nil
}

// EndDelegation ends delegation id, given by from, at now; one that has
// not started yet is removed. ErrNotFound if from gave no such delegation
// still to come or running.
func (s *Store) EndDelegation(ctx context.Context, id int64, from string, now time.Time) error {
	err := s.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewDelete().Model((*Delegation)(nil)).Where("id = ? AND from_user = ? AND starts_at >= ?", id, from, now).Exec(ctx)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		res, err = tx.NewUpdate().Model((*Delegation)(nil)).Set("ends_at = ?", now).
			Where("id = ? AND from_user = ? AND starts_at < ? AND ends_at > ?", id, from, now, now).Exec(ctx)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: end delegation %d: %w", id, err)
	}
	return nil
}
