{{/* Chart name, overridable. */}}
{{- define "task-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "task-service.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "task-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "task-service.labels" -}}
helm.sh/chart: {{ include "task-service.chart" . }}
{{ include "task-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels (add app.kubernetes.io/component per workload). */}}
{{- define "task-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "task-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The service's image: by digest when one is given, else by tag (default: the chart's appVersion). */}}
{{- define "task-service.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "task-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "task-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the pods read DATABASE_URL, TASK_API_TOKENS and TASK_QUERY_TARGETS from. */}}
{{- define "task-service.secretName" -}}
{{- if .Values.existingSecret.name }}
{{- .Values.existingSecret.name }}
{{- else }}
{{- include "task-service.fullname" . }}
{{- end }}
{{- end }}

{{/* The in-chart PostgreSQL's Service (its host name) and its Secret of generated passwords. */}}
{{- define "task-service.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "task-service.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* TASK_QUERY_TARGETS from the queryTargets map: name=url pairs, comma-separated, in name order. */}}
{{- define "task-service.queryTargets" -}}
{{- $pairs := list }}
{{- range $name, $url := .Values.queryTargets }}
{{- $pairs = append $pairs (printf "%s=%s" $name $url) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/*
Whether the chart generates the API token: no tokens given, none in an existing Secret, and not insecure.
*/}}
{{- define "task-service.generatesToken" -}}
{{- if and (not .Values.apiTokens) (not .Values.existingSecret.name) (not .Values.server.allowInsecure) }}true{{ end }}
{{- end }}

{{/*
Refuses configurations the service would refuse, or that could not work, before anything is deployed,
naming the value to set. (values.schema.json has already checked each value's type and range.)
*/}}
{{- define "task-service.validate" -}}
{{- if .Values.postgresql.enabled }}
{{- if or .Values.databaseUrl .Values.existingSecret.name }}
{{- fail "task-service: postgresql.enabled runs the chart's own database: leave databaseUrl and existingSecret.name empty (or set postgresql.enabled=false to use yours)" }}
{{- end }}
{{- if and .Values.postgresql.playground (hasKey .Values.queryTargets "playground") }}
{{- fail "task-service: queryTargets.playground clashes with the in-chart playground (postgresql.playground=true): rename the target or set postgresql.playground=false" }}
{{- end }}
{{- else if and (not .Values.databaseUrl) (not .Values.existingSecret.name) }}
{{- fail "task-service: no database: set databaseUrl=postgres://user:password@host:5432/db, or existingSecret.name (a Secret with DATABASE_URL), or postgresql.enabled=true for an in-chart PostgreSQL to try it out (as values-kind.yaml does)" }}
{{- end }}
{{- if le (mul (int64 .Values.worker.terminationGracePeriodSeconds) 1000) (int64 .Values.worker.shutdownGraceMs) }}
{{- fail "task-service: worker.terminationGracePeriodSeconds must be longer than worker.shutdownGraceMs, or Kubernetes kills workers before they release their tasks" }}
{{- end }}
{{- if and .Values.worker.autoscaling.enabled .Values.worker.keda.enabled }}
{{- fail "task-service: worker.autoscaling.enabled and worker.keda.enabled both scale the worker Deployment: turn one off" }}
{{- end }}
{{- if gt (int .Values.worker.autoscaling.minReplicas) (int .Values.worker.autoscaling.maxReplicas) }}
{{- fail "task-service: worker.autoscaling.minReplicas is above worker.autoscaling.maxReplicas" }}
{{- end }}
{{- if gt (int .Values.worker.keda.minReplicaCount) (int .Values.worker.keda.maxReplicaCount) }}
{{- fail "task-service: worker.keda.minReplicaCount is above worker.keda.maxReplicaCount" }}
{{- end }}
{{- if and .Values.server.tls.enabled (not .Values.server.tls.secretName) }}
{{- fail "task-service: server.tls.enabled needs server.tls.secretName, a kubernetes.io/tls Secret with tls.crt and tls.key" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.worker.metricsPort) }}
{{- fail "task-service: serviceMonitor.enabled scrapes the workers' metrics: set worker.metricsPort" }}
{{- end }}
{{- end }}

{{/*
Environment of every service container: the database, run_query targets and shell switch (the server
checks new tasks against them, the workers use them), the log level, then extraEnv. With the in-chart
PostgreSQL, DATABASE_URL is put together from its generated password: Kubernetes expands $(NAME) from
variables defined before it.
*/}}
{{- define "task-service.env" -}}
{{- if .Values.postgresql.enabled }}
{{- $pg := include "task-service.postgresql.fullname" . }}
- name: TASK_CHART_POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $pg }}
      key: password
- name: DATABASE_URL
  value: {{ printf "postgres://%s:$(TASK_CHART_POSTGRES_PASSWORD)@%s:5432/%s" .Values.postgresql.username $pg .Values.postgresql.database | quote }}
{{- if .Values.postgresql.playground }}
- name: TASK_CHART_PLAYGROUND_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $pg }}
      key: playground-password
{{- if .Values.queryTargets }}
- name: TASK_CHART_QUERY_TARGETS
  valueFrom:
    secretKeyRef:
      name: {{ include "task-service.fullname" . }}
      key: TASK_QUERY_TARGETS
{{- end }}
- name: TASK_QUERY_TARGETS
  value: {{ printf "playground=postgres://playground:$(TASK_CHART_PLAYGROUND_PASSWORD)@%s:5432/playground%s" $pg (ternary " $(TASK_CHART_QUERY_TARGETS)" "" (not (empty .Values.queryTargets))) | quote }}
{{- end }}
{{- else }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "task-service.secretName" . }}
      key: {{ if .Values.existingSecret.name }}{{ .Values.existingSecret.databaseUrlKey }}{{ else }}DATABASE_URL{{ end }}
{{- end }}
{{- if and .Values.existingSecret.name (not (and .Values.postgresql.enabled .Values.postgresql.playground)) }}
- name: TASK_QUERY_TARGETS
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.name }}
      key: {{ .Values.existingSecret.queryTargetsKey }}
      optional: true
{{- else if and .Values.queryTargets (not (and .Values.postgresql.enabled .Values.postgresql.playground)) }}
- name: TASK_QUERY_TARGETS
  valueFrom:
    secretKeyRef:
      name: {{ include "task-service.fullname" . }}
      key: TASK_QUERY_TARGETS
{{- end }}
- name: TASK_ENABLE_SHELL
  value: {{ .Values.enableShell | toString | quote }}
- name: TASK_SHELL_ROLE
  value: {{ .Values.shellRole | default "admin" | quote }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Writable directories under a read-only root filesystem: /tmp and /data (TASK_DATA_DIR: the email outbox), then extraVolumeMounts. */}}
{{- define "task-service.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /data
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "task-service.volumes" -}}
- name: tmp
  emptyDir: {}
- name: data
  emptyDir: {}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* What every pod of the service shares: pull secrets, the ServiceAccount without a token, the pod security context. */}}
{{- define "task-service.podSpecCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "task-service.serviceAccountName" . }}
# Shell tasks run in the worker pods: no Kubernetes API token for them to read.
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* A soft spread of one component's pods over topologySpread.topologyKey. Call with (list . "server"). */}}
{{- define "task-service.topologySpread" -}}
{{- $ := index . 0 }}
{{- $component := index . 1 }}
{{- if $.Values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ $.Values.topologySpread.maxSkew }}
    topologyKey: {{ $.Values.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ $.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "task-service.selectorLabels" $ | nindent 8 }}
        app.kubernetes.io/component: {{ $component }}
{{- end }}
{{- end }}

{{/*
With the in-chart PostgreSQL: an init container that waits until it accepts connections (pg_isready from
the same postgres image), so the migrate Job and the pods do not start against a database still
initialising. The Job's activeDeadlineSeconds bounds the wait.
*/}}
{{- define "task-service.waitForPostgresql" -}}
{{- if .Values.postgresql.enabled }}
initContainers:
  - name: wait-for-postgresql
    image: {{ printf "%s:%s" .Values.postgresql.image.repository .Values.postgresql.image.tag }}
    imagePullPolicy: {{ .Values.postgresql.image.pullPolicy }}
    command: ["sh", "-c", "until pg_isready -h \"$PGHOST\" -p 5432 -U \"$PGUSER\" -d \"$PGDATABASE\"; do sleep 2; done"]
    env:
      - name: PGHOST
        value: {{ include "task-service.postgresql.fullname" . }}
      - name: PGUSER
        value: {{ .Values.postgresql.username | quote }}
      - name: PGDATABASE
        value: {{ .Values.postgresql.database | quote }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    resources:
      requests:
        cpu: 10m
        memory: 16Mi
{{- end }}
{{- end }}

{{/*
Shell lines that turn TASK_TOKEN (the whole TASK_API_TOKENS value) into the first entry's bearer token:
the first comma-separated entry, without its `name:role:` prefix when it has one.
*/}}
{{- define "task-service.firstTokenScript" -}}
# TASK_API_TOKENS may list several tokens: the first (an admin token) will do; name:role:token entries send only the token.
TASK_TOKEN="${TASK_TOKEN%%,*}"
case "$TASK_TOKEN" in *:reader:*|*:operator:*|*:admin:*) TASK_TOKEN="${TASK_TOKEN#*:*:}" ;; esac
export TASK_TOKEN
{{- end }}
