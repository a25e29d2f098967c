package main

// The fake workspace RUNS the jobs the CLI deployed (TEST DOUBLE of the Jobs API's run endpoints).
//
// libs/testserver's own jobs/run-now runs wheel tasks one after another at request time and
// reports every task SUCCESS unless it fails, with no depends_on, run_if or timeouts; its
// runs/get answers RUNNING once, then TERMINATED. These handlers replace run-now, runs/get,
// runs/get-output, runs/cancel, runs/repair and runs/list (registered before the defaults: the
// router keeps the first handler of a route, libs/testserver/router.go) so that a run is
// executed by the project's job runner, in a process group of its own, from the job settings
// AS DEPLOYED (jobs/get's JSON), and the states it reports are served the way the Jobs API
// reports them (databricks-sdk-go service/jobs: RunLifeCycleState, RunResultState, RunTask):
//
//   PENDING    until the runner reports its first state;
//   RUNNING    with per-task states (PENDING, RUNNING, TERMINATED + result_state);
//   TERMINATED SUCCESS | SUCCESS_WITH_FAILURES | CANCELED | TIMEDOUT, or INTERNAL_ERROR with
//              result_state FAILED when a task failed (what a workspace reports in the
//              deprecated life_cycle_state: the SDK's waiter then fails with the state message,
//              and `bundle run` prints each failed task's error and trace from runs/get-output).
//
// A failed task's state_message is the workspace's "Workload failed, see run output for
// details"; the run's is "Task <key> failed with message: <that>." (libs/testserver/jobs.go
// measured it on a workspace). runs/cancel stops the run's process group (SIGTERM, then SIGKILL
// after cancelGrace) and the run ends CANCELED; a job's timeout_seconds does the same and the
// run ends TIMEDOUT, as Databricks stops a run at its timeout (docs: jobs/configure-job,
// "Timeout"). A runner that dies without a final state ends the run INTERNAL_ERROR with the
// tail of its log: a crash of the double is never a success.
//
// The runner command (-python, -runner: scripts/ci/fake_workspace_runner.py) gets one file,
// request.json: the run id, the job's settings as deployed, every job of the workspace (for
// run_job_task), the run's job parameters, the workspace's name (the token's workspace) and the
// wheels its tasks install and the deployment's metadata, exported from the workspace's files. It writes state.json (replaced
// atomically at each change) in the same folder.

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/databricks/cli/libs/testserver"
	"github.com/databricks/databricks-sdk-go/service/jobs"
)

const (
	// After SIGTERM the runner cancels the run itself (running tasks stopped, failure-handling
	// tasks still run); its process group is killed if it has not ended this much later.
	cancelGrace = 120 * time.Second
	// The runner stops a run at the job's timeout_seconds itself; this is the backstop.
	timeoutBackstop      = 60 * time.Second
	workloadFailed       = "Workload failed, see run output for details"
	workspaceIDInRunURLs = "900800700600"
)

// taskState is one task of state.json, as the runner reports it.
type taskState struct {
	LifeCycleState string `json:"life_cycle_state"`
	ResultState    string `json:"result_state,omitempty"`
	StateMessage   string `json:"state_message,omitempty"`
	StartTime      int64  `json:"start_time,omitempty"`
	EndTime        int64  `json:"end_time,omitempty"`
	AttemptNumber  int    `json:"attempt_number,omitempty"`
	Error          string `json:"error,omitempty"`
	ErrorTrace     string `json:"error_trace,omitempty"`
	Logs           string `json:"logs,omitempty"`
}

// runnerState is state.json.
type runnerState struct {
	LifeCycleState string               `json:"life_cycle_state"`
	ResultState    string               `json:"result_state,omitempty"`
	StateMessage   string               `json:"state_message,omitempty"`
	Tasks          map[string]taskState `json:"tasks"`
}

type fakeRun struct {
	id, jobID int64
	name      string
	workspace string
	dir       string
	url       string
	taskKeys  []string
	taskIDs   map[string]int64
	params    []jobs.JobParameter
	start     time.Time
	timeout   time.Duration
	cmd       *exec.Cmd
	done      chan struct{}
	// set once the process ended (under jobRunner.mu)
	final  *runnerState
	ending string // "", "cancel" or "timeout": why the fake workspace stopped it
}

type taskRef struct {
	run *fakeRun
	key string
}

type jobRunner struct {
	python, script, workdir, url string
	t                            *serverT

	mu       sync.Mutex
	runs     map[int64]*fakeRun
	taskRuns map[int64]taskRef
	byToken  map[string]int64 // idempotency token -> run id
	nextID   int64
}

func newJobRunner(t *serverT, python, script, url string) (*jobRunner, error) {
	workdir, err := os.MkdirTemp("", "fake-workspace-runs-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(workdir) })
	return &jobRunner{
		python: python, script: script, workdir: workdir, url: url, t: t,
		runs: map[int64]*fakeRun{}, taskRuns: map[int64]taskRef{}, byToken: map[string]int64{},
		nextID: 1_000_000 + time.Now().Unix()%1_000_000*1_000,
	}, nil
}

func (r *jobRunner) register(server *testserver.Server) {
	server.Handle("POST", "/api/2.2/jobs/run-now", r.runNow)
	server.Handle("GET", "/api/2.2/jobs/runs/get", r.getRun)
	server.Handle("GET", "/api/2.2/jobs/runs/get-output", r.getRunOutput)
	server.Handle("POST", "/api/2.2/jobs/runs/cancel", r.cancelRun)
	server.Handle("POST", "/api/2.2/jobs/runs/repair", r.repairRun)
	server.Handle("GET", "/api/2.2/jobs/runs/list", r.listRuns)
}

func badRequest(format string, args ...any) testserver.Response {
	return testserver.Response{StatusCode: 400, Body: map[string]string{
		"error_code": "INVALID_PARAMETER_VALUE", "message": fmt.Sprintf(format, args...)}}
}

func notFound(format string, args ...any) testserver.Response {
	return testserver.Response{StatusCode: 404, Body: map[string]string{
		"error_code": "RESOURCE_DOES_NOT_EXIST", "message": fmt.Sprintf(format, args...)}}
}

// workspaceName: the token without its identity prefix (the workspace it names, server.go).
func workspaceName(token string) string {
	for _, prefix := range []string{"dbapi0", "dbapi1", "dbapi2"} {
		if rest, ok := strings.CutPrefix(token, prefix); ok {
			return rest
		}
	}
	return token
}

func (r *jobRunner) id() int64 {
	r.nextID++
	return r.nextID
}

func (r *jobRunner) runNow(req testserver.Request) any {
	var request jobs.RunNow
	if err := json.Unmarshal(req.Body, &request); err != nil {
		return badRequest("request parsing error: %s", err)
	}
	if len(request.PythonParams) > 0 || len(request.PythonNamedParams) > 0 || len(request.JarParams) > 0 ||
		len(request.NotebookParams) > 0 || len(request.SqlParams) > 0 || len(request.DbtCommands) > 0 {
		// Jobs with job parameters refuse task-level overrides (docs: jobs/job-parameters).
		return badRequest("this fake workspace runs jobs with job parameters only: pass job_parameters")
	}

	ws := req.Workspace
	unlock := ws.LockUnlock()
	job, ok := ws.Jobs[request.JobId]
	all := map[string]any{}
	for id, j := range ws.Jobs {
		all[strconv.FormatInt(id, 10)] = j.Settings
	}
	unlock()
	if !ok || job.Settings == nil {
		return notFound("Job %d does not exist.", request.JobId)
	}
	settings := job.Settings

	r.mu.Lock()
	if request.IdempotencyToken != "" {
		if id, ok := r.byToken[request.IdempotencyToken]; ok {
			r.mu.Unlock()
			return jobs.RunNowResponse{RunId: id}
		}
	}
	run := &fakeRun{id: r.id(), jobID: request.JobId, name: settings.Name, workspace: workspaceName(req.Token),
		taskIDs: map[string]int64{}, start: time.Now(), done: make(chan struct{})}
	for _, t := range settings.Tasks {
		run.taskKeys = append(run.taskKeys, t.TaskKey)
		run.taskIDs[t.TaskKey] = r.id()
	}
	r.mu.Unlock()
	if run.name == "" {
		run.name = "Untitled"
	}
	run.url = fmt.Sprintf("%s/?o=%s#job/%d/run/%d", r.url, workspaceIDInRunURLs, run.jobID, run.id)
	run.params = jobParameters(settings, request.JobParameters)
	if settings.TimeoutSeconds > 0 {
		run.timeout = time.Duration(settings.TimeoutSeconds) * time.Second
	}
	unknown := []string{}
	for name := range request.JobParameters {
		if !slices.ContainsFunc(settings.Parameters, func(p jobs.JobParameterDefinition) bool { return p.Name == name }) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return badRequest("Job %d has no parameter(s) %s", request.JobId, strings.Join(unknown, ", "))
	}

	run.dir = filepath.Join(r.workdir, strconv.FormatInt(run.id, 10))
	if err := os.MkdirAll(run.dir, 0o755); err != nil {
		return testserver.Response{StatusCode: 500, Body: err.Error()}
	}
	wheels, err := r.exportWheels(ws, run.dir, all)
	if err != nil {
		return badRequest("%s", err)
	}
	// The deployment's metadata (bundle/deploy/metadata: target, job keys and ids): the runner
	// names jobs by their bundle keys, as `bundle run` does.
	var metadata any
	if settings.Deployment != nil && settings.Deployment.MetadataFilePath != "" {
		if data := ws.WorkspaceFilesExportFile(settings.Deployment.MetadataFilePath); len(data) > 0 {
			_ = json.Unmarshal(data, &metadata)
		}
	}
	values := map[string]string{}
	for _, p := range run.params {
		values[p.Name] = p.Value
	}
	request_ := map[string]any{
		"run_id": run.id, "job_id": run.jobID, "job": settings, "jobs": all, "job_parameters": values,
		"workspace": run.workspace, "workspace_url": r.url, "task_run_ids": run.taskIDs, "wheels": wheels,
		"run_page_url": run.url, "deployment_metadata": metadata,
	}
	body, err := json.MarshalIndent(request_, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(run.dir, "request.json"), body, 0o644)
	}
	if err != nil {
		return testserver.Response{StatusCode: 500, Body: err.Error()}
	}

	if err := r.start(run, nil); err != nil {
		return testserver.Response{StatusCode: 500, Body: err.Error()}
	}
	r.mu.Lock()
	r.runs[run.id] = run
	for key, id := range run.taskIDs {
		r.taskRuns[id] = taskRef{run, key}
	}
	if request.IdempotencyToken != "" {
		r.byToken[request.IdempotencyToken] = run.id
	}
	r.mu.Unlock()
	return jobs.RunNowResponse{RunId: run.id, NumberInJob: run.id}
}

// start: the runner process of a run (extra: e.g. --repair FILE), in a process group of its own.
func (r *jobRunner) start(run *fakeRun, extra []string) error {
	log, err := os.OpenFile(filepath.Join(run.dir, "runner.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.python, append([]string{r.script, run.dir}, extra...)...)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = log, log, nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a backstop kill stops the whole group
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("cannot start the job runner: %w", err)
	}
	run.cmd = cmd
	fmt.Fprintf(os.Stderr, "fake-workspace: run %d of job %d (%s) in workspace %s: started %v, pid %d\n",
		run.id, run.jobID, run.name, run.workspace, extra, cmd.Process.Pid)
	go r.wait(run, log)
	return nil
}

// exportWheels writes every wheel a task of the workspace's jobs installs (libraries[].whl,
// a workspace path after deploy) into the run's folder; workspace path -> local file.
func (r *jobRunner) exportWheels(ws *testserver.FakeWorkspace, dir string, all map[string]any) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range all {
		settings, ok := s.(*jobs.JobSettings)
		if !ok || settings == nil {
			continue
		}
		for _, t := range settings.Tasks {
			for _, lib := range t.Libraries {
				if lib.Whl == "" || out[lib.Whl] != "" {
					continue
				}
				data := ws.WorkspaceFilesExportFile(lib.Whl)
				if len(data) == 0 {
					return nil, fmt.Errorf("task %s: library %s is not in the workspace", t.TaskKey, lib.Whl)
				}
				local := filepath.Join(dir, "wheels", strconv.Itoa(len(out)), filepath.Base(lib.Whl))
				if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
					return nil, err
				}
				if err := os.WriteFile(local, data, 0o644); err != nil {
					return nil, err
				}
				out[lib.Whl] = local
			}
		}
	}
	return out, nil
}

// jobParameters: the job's parameters with the run's values over their defaults, by name.
func jobParameters(settings *jobs.JobSettings, overrides map[string]string) []jobs.JobParameter {
	out := []jobs.JobParameter{}
	for _, p := range settings.Parameters {
		value := p.Default
		if v, ok := overrides[p.Name]; ok {
			value = v
		}
		out = append(out, jobs.JobParameter{Name: p.Name, Default: p.Default, Value: value})
	}
	slices.SortFunc(out, func(a, b jobs.JobParameter) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// wait: the run's process until it ends, stopping it at the job's timeout.
func (r *jobRunner) wait(run *fakeRun, log *os.File) {
	exited := make(chan error, 1)
	go func() { exited <- run.cmd.Wait() }()
	var timeout <-chan time.Time
	if run.timeout > 0 {
		timeout = time.After(run.timeout + timeoutBackstop)
	}
	var err error
	select {
	case err = <-exited:
	case <-timeout:
		r.stop(run, "timeout")
		err = <-exited
	}
	log.Close()
	state, readErr := readState(run.dir)
	r.mu.Lock()
	defer r.mu.Unlock()
	terminal := readErr == nil && (state.LifeCycleState == "TERMINATED" || state.LifeCycleState == "INTERNAL_ERROR" ||
		state.LifeCycleState == "SKIPPED")
	switch {
	case run.ending != "" && (!terminal || run.ending != "cancel"):
		state = stopped(run, state) // killed by the backstop: the runner could not say how it ended
	case !terminal:
		tail, _ := os.ReadFile(filepath.Join(run.dir, "runner.log"))
		msg := fmt.Sprintf("the job runner ended (%v) without a final state", err)
		if state == nil {
			state = &runnerState{Tasks: map[string]taskState{}}
		}
		state.LifeCycleState, state.ResultState, state.StateMessage = "INTERNAL_ERROR", "FAILED", msg
		for key, t := range state.Tasks {
			if t.LifeCycleState != "TERMINATED" {
				t.LifeCycleState, t.ResultState, t.StateMessage = "INTERNAL_ERROR", "FAILED", msg
				t.Error, t.ErrorTrace = msg, lastLines(string(tail), 40)
				state.Tasks[key] = t
			}
		}
	}
	run.final = state
	close(run.done)
	fmt.Fprintf(os.Stderr, "fake-workspace: run %d of job %d: %s %s\n", run.id, run.jobID, state.LifeCycleState, state.ResultState)
}

// stopped: the state of a run the fake workspace stopped (cancel, timeout); tasks that had not
// ended are CANCELED (a task stopped while running too: its process is gone).
func stopped(run *fakeRun, state *runnerState) *runnerState {
	if state == nil {
		state = &runnerState{Tasks: map[string]taskState{}}
	}
	now := time.Now().UnixMilli()
	for _, key := range run.taskKeys {
		t := state.Tasks[key]
		if t.LifeCycleState == "TERMINATED" {
			continue
		}
		if t.LifeCycleState == "RUNNING" {
			t.EndTime = now
		}
		t.LifeCycleState, t.ResultState = "TERMINATED", "CANCELED"
		t.StateMessage = "Run cancelled."
		state.Tasks[key] = t
	}
	state.LifeCycleState = "TERMINATED"
	if run.ending == "timeout" {
		state.ResultState = "TIMEDOUT"
		state.StateMessage = fmt.Sprintf("Run timed out: it ran longer than the job's timeout_seconds (%s).", run.timeout)
	} else {
		state.ResultState = "CANCELED"
		state.StateMessage = "Run cancelled."
	}
	return state
}

func (r *jobRunner) stop(run *fakeRun, why string) {
	r.mu.Lock()
	if run.final != nil || run.ending != "" {
		r.mu.Unlock()
		return
	}
	run.ending = why
	r.mu.Unlock()
	pgid := run.cmd.Process.Pid
	done := run.done
	grace := cancelGrace
	if why == "timeout" || why == "shutdown" { // the runner's own timeout did not end the run, or the server stops
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		grace = 10 * time.Second
	} else { // runs/cancel: the runner cancels the run as the Jobs API does
		_ = syscall.Kill(pgid, syscall.SIGTERM)
	}
	go func() {
		select {
		case <-done:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
}

func readState(dir string) (*runnerState, error) {
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	var state runnerState
	if err := json.Unmarshal(data, &state); err != nil {
		return nil, err
	}
	if state.Tasks == nil {
		state.Tasks = map[string]taskState{}
	}
	return &state, nil
}

func lastLines(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// current: the run's state now (the final one, else what the runner last wrote, else PENDING).
func (r *jobRunner) current(run *fakeRun) *runnerState {
	r.mu.Lock()
	final := run.final
	r.mu.Unlock()
	if final != nil {
		return final
	}
	state, err := readState(run.dir)
	if err != nil || state.LifeCycleState == "TERMINATED" || state.LifeCycleState == "INTERNAL_ERROR" ||
		state.LifeCycleState == "SKIPPED" {
		// Not started yet, or ended but its process not yet reaped: the final state decides.
		if err == nil {
			state.LifeCycleState, state.ResultState, state.StateMessage = "RUNNING", "", ""
			return state
		}
		return &runnerState{LifeCycleState: "PENDING", StateMessage: "Waiting for cluster", Tasks: map[string]taskState{}}
	}
	return state
}

func (r *jobRunner) lookup(req testserver.Request) (*fakeRun, string, testserver.Response, bool) {
	id, err := strconv.ParseInt(req.URL.Query().Get("run_id"), 10, 64)
	if err != nil {
		return nil, "", badRequest("run_id: %s", err), false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if run, ok := r.runs[id]; ok {
		return run, "", testserver.Response{}, true
	}
	if ref, ok := r.taskRuns[id]; ok {
		return ref.run, ref.key, testserver.Response{}, true
	}
	return nil, "", notFound("Run %d does not exist.", id), false
}

func (r *jobRunner) asRun(run *fakeRun, state *runnerState) jobs.Run {
	out := jobs.Run{
		RunId: run.id, JobId: run.jobID, RunName: run.name, RunPageUrl: run.url, RunType: jobs.RunTypeJobRun,
		NumberInJob: run.id, StartTime: run.start.UnixMilli(), JobParameters: run.params,
		State: &jobs.RunState{
			LifeCycleState: jobs.RunLifeCycleState(state.LifeCycleState),
			ResultState:    jobs.RunResultState(state.ResultState),
			StateMessage:   state.StateMessage,
		},
	}
	ended := state.LifeCycleState == "TERMINATED" || state.LifeCycleState == "INTERNAL_ERROR" ||
		state.LifeCycleState == "SKIPPED"
	for _, key := range run.taskKeys {
		t, ok := state.Tasks[key]
		if !ok {
			t = taskState{LifeCycleState: "PENDING"}
		}
		task := jobs.RunTask{
			RunId: run.taskIDs[key], TaskKey: key, StartTime: t.StartTime, EndTime: t.EndTime,
			AttemptNumber: t.AttemptNumber,
			State: &jobs.RunState{
				LifeCycleState: jobs.RunLifeCycleState(t.LifeCycleState),
				ResultState:    jobs.RunResultState(t.ResultState),
				StateMessage:   t.StateMessage,
			},
		}
		out.Tasks = append(out.Tasks, task)
		if ended && t.EndTime > out.EndTime {
			out.EndTime = t.EndTime
		}
	}
	if ended && out.EndTime == 0 {
		out.EndTime = time.Now().UnixMilli()
	}
	return out
}

func (r *jobRunner) getRun(req testserver.Request) any {
	run, key, resp, ok := r.lookup(req)
	if !ok {
		return resp
	}
	if key != "" {
		return badRequest("run %s is a task run: use the job run %d", req.URL.Query().Get("run_id"), run.id)
	}
	return r.asRun(run, r.current(run))
}

func (r *jobRunner) getRunOutput(req testserver.Request) any {
	run, key, resp, ok := r.lookup(req)
	if !ok {
		return resp
	}
	if key == "" {
		if len(run.taskKeys) != 1 {
			// The Jobs API: "Retrieving the output of a run with multiple tasks is not supported."
			return badRequest("Retrieving the output of run %d with multiple tasks is not supported. "+
				"Please retrieve the output of each individual task run instead.", run.id)
		}
		key = run.taskKeys[0]
	}
	state := r.current(run)
	t := state.Tasks[key]
	whole := r.asRun(run, state)
	return jobs.RunOutput{Error: t.Error, ErrorTrace: t.ErrorTrace, Logs: t.Logs, Metadata: &whole}
}

func (r *jobRunner) cancelRun(req testserver.Request) any {
	var request jobs.CancelRun
	if err := json.Unmarshal(req.Body, &request); err != nil {
		return badRequest("request parsing error: %s", err)
	}
	r.mu.Lock()
	run, ok := r.runs[request.RunId]
	r.mu.Unlock()
	if !ok {
		return notFound("Run %d does not exist.", request.RunId)
	}
	r.stop(run, "cancel") // a run that already ended keeps its outcome
	return map[string]any{}
}

// repairRun: runs/repair re-runs the chosen tasks of an ended run within the same run id
// (docs: jobs/repair-job-failures), through the runner's repair_run.
func (r *jobRunner) repairRun(req testserver.Request) any {
	var request jobs.RepairRun
	if err := json.Unmarshal(req.Body, &request); err != nil {
		return badRequest("request parsing error: %s", err)
	}
	r.mu.Lock()
	run, ok := r.runs[request.RunId]
	if !ok {
		r.mu.Unlock()
		return notFound("Run %d does not exist.", request.RunId)
	}
	if run.final == nil {
		r.mu.Unlock()
		return badRequest("Run %d is still in progress: only a run that ended can be repaired", request.RunId)
	}
	if len(request.RerunTasks) == 0 && !request.RerunAllFailedTasks {
		r.mu.Unlock()
		return badRequest("rerun_tasks or rerun_all_failed_tasks must be set")
	}
	final := run.final
	run.final, run.ending, run.done = nil, "", make(chan struct{})
	repairID := r.id()
	r.mu.Unlock()

	before, _ := json.Marshal(final)
	body, _ := json.Marshal(map[string]any{
		"rerun_tasks": request.RerunTasks, "rerun_all_failed_tasks": request.RerunAllFailedTasks,
		"rerun_dependent_tasks": request.RerunDependentTasks, "job_parameters": request.JobParameters,
		"repair_id": repairID,
	})
	file := filepath.Join(run.dir, fmt.Sprintf("repair-%d.json", repairID))
	err := os.WriteFile(filepath.Join(run.dir, "state.json.before-repair"), before, 0o644)
	if err == nil {
		err = os.WriteFile(file, body, 0o644)
	}
	if err == nil {
		_ = os.Remove(filepath.Join(run.dir, "state.json"))
		err = r.start(run, []string{"--repair", file})
	}
	if err != nil {
		r.mu.Lock()
		run.final = final
		close(run.done)
		r.mu.Unlock()
		return testserver.Response{StatusCode: 500, Body: err.Error()}
	}
	return jobs.RepairRunResponse{RepairId: repairID}
}

func (r *jobRunner) listRuns(req testserver.Request) any {
	q := req.URL.Query()
	jobID, _ := strconv.ParseInt(q.Get("job_id"), 10, 64)
	activeOnly := q.Get("active_only") == "true"
	r.mu.Lock()
	runs := make([]*fakeRun, 0, len(r.runs))
	for _, run := range r.runs {
		if run.workspace == workspaceName(req.Token) && (jobID == 0 || run.jobID == jobID) {
			runs = append(runs, run)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(runs, func(a, b *fakeRun) int { return cmp.Compare(b.id, a.id) }) // newest first
	out := []jobs.BaseRun{}
	for _, run := range runs {
		state := r.current(run)
		if activeOnly && (state.LifeCycleState == "TERMINATED" || state.LifeCycleState == "INTERNAL_ERROR") {
			continue
		}
		full := r.asRun(run, state)
		out = append(out, jobs.BaseRun{RunId: full.RunId, JobId: full.JobId, RunName: full.RunName,
			RunPageUrl: full.RunPageUrl, State: full.State, StartTime: full.StartTime, EndTime: full.EndTime,
			RunType: full.RunType})
	}
	return map[string]any{"runs": out, "has_more": false}
}

// stopAll: on shutdown, no run outlives the server.
func (r *jobRunner) stopAll() {
	r.mu.Lock()
	runs := make([]*fakeRun, 0, len(r.runs))
	for _, run := range r.runs {
		runs = append(runs, run)
	}
	r.mu.Unlock()
	for _, run := range runs {
		r.stop(run, "shutdown")
	}
	for _, run := range runs {
		select {
		case <-run.done:
		case <-time.After(15 * time.Second):
			fmt.Fprintf(os.Stderr, "fake-workspace: run %d did not stop\n", run.id)
		}
	}
}
