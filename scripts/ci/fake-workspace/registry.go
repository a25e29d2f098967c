package main

// TEST DOUBLE of the two Unity Catalog registry calls that link a registered model to its MLflow 3
// deployment job (docs: mlflow/deployment-job): what MlflowClient.get_registered_model and
// update_registered_model(name, deployment_job_id=...) send with registry URI databricks-uc
// (MLflow 3.8.1 mlflow/store/_unity_catalog/registry/rest_store.py; routes and messages from
// mlflow/protos/databricks_uc_registry_service.proto and databricks_uc_registry_messages.proto),
// and what scripts/ci/link-deployment-job.sh calls with `databricks api`:
//
//   GET   /api/2.0/mlflow/unity-catalog/registered-models/get?name=<catalog.schema.model>
//   PATCH /api/2.0/mlflow/unity-catalog/registered-models/update
//         {"name": ..., "deployment_job_id": "<job id>" | "" (unlinks), "description": ...}
//   -> {"registered_model": {name, creation_timestamp, last_updated_timestamp, user_id,
//      description, deployment_job_id}}
//
// The models are the workspace's own Unity Catalog registered models (created by `bundle deploy`
// through /api/2.1/unity-catalog/models, libs/testserver); only the link is kept here, per
// workspace. libs/testserver has no handler for these routes (a request to them is an unanswered
// request, which fails the fake workspace).
//
// The failure modes a workspace answers with, as the Databricks REST API's error shape
// ({"error_code", "message"}, which the CLI prints as "Error: <message>"):
//
//   400 INVALID_PARAMETER_VALUE  no name, a name that is not catalog.schema.model, a job id that
//                                is not a number;
//   404 RESOURCE_DOES_NOT_EXIST  no such registered model ("Routine or Model '<name>' does not
//                                exist.", Unity Catalog's words for models), or no such job in this
//                                workspace (the Jobs API's "Job <id> does not exist.");
//   403 PERMISSION_DENIED        reading needs ownership or a privilege on the model; changing it
//                                needs ownership or MANAGE (UC: securable FUNCTION, as the CLI
//                                grants on registered models, bundle/direct/dresources/grants.go).
//
// The exact code a workspace answers for a missing job is not documented; this double answers
// what the Jobs API answers for it.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/databricks/cli/libs/testserver"
	"github.com/databricks/databricks-sdk-go/service/catalog"
)

const ucRegistry = "/api/2.0/mlflow/unity-catalog/registered-models"

type modelLinks struct {
	mu    sync.Mutex
	links map[*testserver.FakeWorkspace]map[string]string // workspace -> model full name -> job id
}

func newModelLinks() *modelLinks {
	return &modelLinks{links: map[*testserver.FakeWorkspace]map[string]string{}}
}

func (m *modelLinks) register(server *testserver.Server) {
	server.Handle("GET", ucRegistry+"/get", m.get)
	server.Handle("PATCH", ucRegistry+"/update", m.update)
}

// linked: the job a model of a workspace is linked to ("" when none).
func (m *modelLinks) linked(ws *testserver.FakeWorkspace, model string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.links[ws][model]
}

func permissionDenied(format string, args ...any) testserver.Response {
	return testserver.Response{StatusCode: 403, Body: map[string]string{
		"error_code": "PERMISSION_DENIED", "message": fmt.Sprintf(format, args...)}}
}

// model: the registered model named by a request, or the error response.
func model(req testserver.Request, name string) (catalog.RegisteredModelInfo, testserver.Response, bool) {
	if name == "" {
		return catalog.RegisteredModelInfo{}, badRequest("Missing required parameter 'name'."), false
	}
	if parts := strings.Split(name, "."); len(parts) != 3 || slices.Contains(parts, "") {
		return catalog.RegisteredModelInfo{}, badRequest(
			"Invalid model name '%s': the name must specify all three levels (catalog.schema.model).", name), false
	}
	ws := req.Workspace
	unlock := ws.LockUnlock()
	info, ok := ws.RegisteredModels[name]
	unlock()
	if !ok {
		return info, notFound("Routine or Model '%s' does not exist.", name), false
	}
	return info, testserver.Response{}, true
}

// privileges: what the caller holds on the model (owner: everything).
func privileges(req testserver.Request, info catalog.RegisteredModelInfo) (owner bool, held map[catalog.Privilege]bool) {
	user := req.Workspace.MeUser(req.Token).UserName // the caller (a workspace's first token is its owner)
	held = map[catalog.Privilege]bool{}
	ws := req.Workspace
	unlock := ws.LockUnlock()
	defer unlock()
	for _, assignment := range ws.Grants["FUNCTION:"+info.FullName] {
		if assignment.Principal == user {
			for _, p := range assignment.Privileges {
				held[p] = true
			}
		}
	}
	return info.Owner == user, held
}

func (m *modelLinks) answer(req testserver.Request, info catalog.RegisteredModelInfo) any {
	body := map[string]any{
		"name": info.FullName, "creation_timestamp": info.CreatedAt, "last_updated_timestamp": info.UpdatedAt,
		"user_id": info.CreatedBy, "description": info.Comment,
	}
	if job := m.linked(req.Workspace, info.FullName); job != "" {
		body["deployment_job_id"] = job
	}
	return map[string]any{"registered_model": body}
}

func (m *modelLinks) get(req testserver.Request) any {
	info, resp, ok := model(req, req.URL.Query().Get("name"))
	if !ok {
		return resp
	}
	if owner, held := privileges(req, info); !owner && len(held) == 0 {
		return permissionDenied("User does not have any privilege on Routine or Model '%s'.", info.FullName)
	}
	return m.answer(req, info)
}

func (m *modelLinks) update(req testserver.Request) any {
	var request struct {
		Name            string  `json:"name"`
		NewName         string  `json:"new_name"`
		Description     *string `json:"description"`
		DeploymentJobID *string `json:"deployment_job_id"`
	}
	if err := json.Unmarshal(req.Body, &request); err != nil {
		return badRequest("request parsing error: %s", err)
	}
	info, resp, ok := model(req, request.Name)
	if !ok {
		return resp
	}
	if request.NewName != "" {
		return badRequest("this fake workspace does not rename registered models")
	}
	if owner, held := privileges(req, info); !owner && !held[catalog.PrivilegeManage] && !held[catalog.PrivilegeAllPrivileges] {
		return permissionDenied("User does not have MANAGE on Routine or Model '%s'.", info.FullName)
	}
	if request.DeploymentJobID != nil && *request.DeploymentJobID != "" {
		id, err := strconv.ParseInt(*request.DeploymentJobID, 10, 64)
		if err != nil || id <= 0 {
			return badRequest("Invalid deployment_job_id '%s': expected a job id.", *request.DeploymentJobID)
		}
		ws := req.Workspace
		unlock := ws.LockUnlock()
		_, exists := ws.Jobs[id]
		unlock()
		if !exists {
			return notFound("Job %d does not exist.", id)
		}
	}
	ws := req.Workspace
	unlock := ws.LockUnlock()
	if request.Description != nil {
		info.Comment = *request.Description
	}
	info.UpdatedAt = time.Now().UnixMilli()
	ws.RegisteredModels[info.FullName] = info
	unlock()
	if request.DeploymentJobID != nil {
		m.mu.Lock()
		if m.links[ws] == nil {
			m.links[ws] = map[string]string{}
		}
		if *request.DeploymentJobID == "" {
			delete(m.links[ws], info.FullName) // "" disconnects the job (MLflow #18488)
		} else {
			m.links[ws][info.FullName] = *request.DeploymentJobID
		}
		m.mu.Unlock()
	}
	return m.answer(req, info)
}
