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

{{- define "task-service.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret the pods read DATABASE_URL, TASK_API_TOKENS and TASK_QUERY_TARGETS from. */}}
{{- define "task-service.secretName" -}}
{{- if .Values.existingSecret.name }}
{{- .Values.existingSecret.name }}
{{- else }}
{{- include "task-service.fullname" . }}
{{- end }}
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
Refuses configurations the service would refuse, or that would be unsafe, before anything is deployed:
no database; an API on 0.0.0.0 without tokens; a pod grace period shorter than the service's own.
*/}}
{{- define "task-service.validate" -}}
{{- if and (not .Values.databaseUrl) (not .Values.existingSecret.name) }}
{{- fail "task-service: set databaseUrl (postgres://...) or existingSecret.name: without DATABASE_URL the service would start an embedded PostgreSQL inside the pod" }}
{{- end }}
{{- if and (not .Values.apiTokens) (not .Values.existingSecret.name) (not .Values.server.allowInsecure) }}
{{- fail "task-service: the server listens on 0.0.0.0, so it needs API tokens: set apiTokens (e.g. --set apiTokens[0]=...) or existingSecret.name, or server.allowInsecure=true to accept unauthenticated access" }}
{{- end }}
{{- if le (mul (int64 .Values.worker.terminationGracePeriodSeconds) 1000) (int64 .Values.worker.shutdownGraceMs) }}
{{- fail "task-service: worker.terminationGracePeriodSeconds must be longer than worker.shutdownGraceMs, or Kubernetes kills workers before they release their tasks" }}
{{- end }}
{{- end }}

{{/*
Environment of every container: the database, run_query targets and shell switch (the server checks new
tasks against them, the workers use them), the log level, then extraEnv.
*/}}
{{- define "task-service.env" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "task-service.secretName" . }}
      key: {{ if .Values.existingSecret.name }}{{ .Values.existingSecret.databaseUrlKey }}{{ else }}DATABASE_URL{{ end }}
{{- if .Values.existingSecret.name }}
- name: TASK_QUERY_TARGETS
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.name }}
      key: {{ .Values.existingSecret.queryTargetsKey }}
      optional: true
{{- else if .Values.queryTargets }}
- name: TASK_QUERY_TARGETS
  valueFrom:
    secretKeyRef:
      name: {{ include "task-service.fullname" . }}
      key: TASK_QUERY_TARGETS
{{- end }}
- name: TASK_ENABLE_SHELL
  value: {{ .Values.enableShell | toString | quote }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Writable directories under a read-only root filesystem: /tmp (tsx's compile cache) and /data (TASK_DATA_DIR: the email outbox). */}}
{{- define "task-service.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /data
{{- end }}

{{- define "task-service.volumes" -}}
- name: tmp
  emptyDir: {}
- name: data
  emptyDir: {}
{{- end }}
