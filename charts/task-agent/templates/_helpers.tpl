{{/* Chart name, overridable. */}}
{{- define "task-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "task-agent.fullname" -}}
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

{{- define "task-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "task-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "task-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "task-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "task-agent.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "task-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "task-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the token: the operator's, or the chart's own (from token.value). */}}
{{- define "task-agent.tokenSecret" -}}
{{- if .Values.token.existingSecret.name }}
{{- .Values.token.existingSecret.name }}
{{- else }}
{{- include "task-agent.fullname" . }}
{{- end }}
{{- end }}

{{/* Refuses values that cannot work: no server, no token, two CA sources. */}}
{{- define "task-agent.validate" -}}
{{- if not .Values.server }}
{{- fail "server is required: the control plane's API address (https://...), or several, comma-separated" }}
{{- end }}
{{- range (splitList "," .Values.server) }}
{{- if not (regexMatch "^https?://[^,\\s]+$" (trim .)) }}
{{- fail (printf "server: %q is not an http:// or https:// address" (trim .)) }}
{{- end }}
{{- end }}
{{- if and (not .Values.token.existingSecret.name) (not .Values.token.value) }}
{{- fail "an agent token is required: token.existingSecret.name (a Secret you manage) or token.value (task-cli agent token create)" }}
{{- end }}
{{- if and .Values.token.existingSecret.name .Values.token.value }}
{{- fail "token: set existingSecret.name or value, not both" }}
{{- end }}
{{- if and .Values.ca.secretName .Values.ca.configMapName }}
{{- fail "ca: set secretName or configMapName, not both" }}
{{- end }}
{{- end }}

{{/* labels as `k=v,k2=v2`, sorted by key. */}}
{{- define "task-agent.labelList" -}}
{{- $pairs := list }}
{{- range $k, $v := . }}
{{- $pairs = append $pairs (printf "%s=%v" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
