{{/* Names, labels and switches shared by every template of the chart. */}}

{{/* The chart name, or nameOverride. */}}
{{- define "netreach.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else "<release>-<name>", or the
release name alone when it already contains the chart name. Truncated to 63 characters (DNS label).
*/}}
{{- define "netreach.fullname" -}}
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

{{/* "<chart>-<version>", as the helm.sh/chart label. */}}
{{- define "netreach.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The standard labels of every object. */}}
{{- define "netreach.labels" -}}
helm.sh/chart: {{ include "netreach.chart" . }}
{{ include "netreach.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: agent
app.kubernetes.io/part-of: netreach
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The labels that select the agent pods (immutable in the DaemonSet: never add to them). */}}
{{- define "netreach.selectorLabels" -}}
app.kubernetes.io/name: {{ include "netreach.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The agent's ServiceAccount name. */}}
{{- define "netreach.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "netreach.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The agent image: repository@digest when a digest is set, else repository:tag (default appVersion). */}}
{{- define "netreach.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Whether an optional monitoring object is rendered: "true" or "". Takes
(dict "enabled" <true|false|"auto"> "context" $); "auto" means "when the cluster serves the
Prometheus Operator API monitoring.coreos.com/v1" (offline `helm template` sees it only with
`--api-versions monitoring.coreos.com/v1`).
*/}}
{{- define "netreach.switch" -}}
{{- $enabled := .enabled }}
{{- if eq (toString $enabled) "auto" }}
{{- if .context.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- else if $enabled }}true
{{- end }}
{{- end }}

{{/*
The Secret holding the API's certificate: tls.secretName, or the one cert-manager fills, or ""
(each agent then generates a self-signed certificate at start).
*/}}
{{- define "netreach.tlsSecretName" -}}
{{- if .Values.tls.secretName }}
{{- .Values.tls.secretName }}
{{- else if .Values.tls.certManager.enabled }}
{{- printf "%s-tls" (include "netreach.fullname" .) }}
{{- end }}
{{- end }}

{{/* The switches of the optional objects; templates test `eq (include ...) "true"`. */}}
{{- define "netreach.serviceMonitor.enabled" -}}
{{- include "netreach.switch" (dict "enabled" .Values.serviceMonitor.enabled "context" .) }}
{{- end }}
{{- define "netreach.prometheusRule.enabled" -}}
{{- include "netreach.switch" (dict "enabled" .Values.prometheusRule.enabled "context" .) }}
{{- end }}
{{- define "netreach.dashboard.enabled" -}}
{{- include "netreach.switch" (dict "enabled" .Values.dashboard.enabled "context" .) }}
{{- end }}
