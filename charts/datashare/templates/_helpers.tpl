{{/* Names, labels and image references shared by the templates. */}}

{{- define "datashare.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: "<release>-datashare", or the release name when it already contains the chart name. */}}
{{- define "datashare.fullname" -}}
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

{{- define "datashare.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the release carries. */}}
{{- define "datashare.labels" -}}
helm.sh/chart: {{ include "datashare.chart" . }}
{{ include "datashare.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: datashare
{{- end }}

{{/* The operator pods' identity: the Deployment's selector and the metrics Service's. */}}
{{- define "datashare.selectorLabels" -}}
app.kubernetes.io/name: {{ include "datashare.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "datashare.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "datashare.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {registry, repository, tag, digest}: "[registry/]repository" then
"@digest" when a digest is given, else ":tag" (the chart's appVersion when the tag is empty).
Call with (dict "image" .Values.x.image "root" $).
*/}}
{{- define "datashare.image" -}}
{{- $repo := .image.repository }}
{{- if .image.registry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .image.registry) .image.repository }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repo .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* Namespace of the Kafka security Secret (the release namespace unless given). */}}
{{- define "datashare.kafkaSecretNamespace" -}}
{{- default .Release.Namespace .Values.kafka.securitySecret.namespace }}
{{- end }}

{{/* Namespace of the dashboard ConfigMap. */}}
{{- define "datashare.dashboardNamespace" -}}
{{- default .Release.Namespace .Values.grafanaDashboard.namespace }}
{{- end }}

{{/* Whether the cluster serves a prometheus-operator kind: (dict "kind" "ServiceMonitor" "root" $). */}}
{{- define "datashare.hasMonitoringKind" -}}
{{- if .root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" .kind) }}true{{ end }}
{{- end }}
