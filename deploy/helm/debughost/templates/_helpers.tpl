{{/* Names and labels, after the conventions of `helm create`. */}}
{{- define "debughost.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "debughost.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "debughost.headless" -}}
{{- printf "%s-headless" (include "debughost.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "debughost.selectorLabels" -}}
app.kubernetes.io/name: {{ include "debughost.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "debughost.labels" -}}
{{ include "debughost.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The stable DNS name of pod i's gRPC address: <fullname>-<i>.<headless>.<namespace>.svc.<domain>:<port>. */}}
{{- define "debughost.peerSuffix" -}}
{{- printf "%s.%s.svc.%s:%d" (include "debughost.headless" .) .Release.Namespace .Values.clusterDomain (int .Values.ports.grpc) -}}
{{- end -}}

{{/* Every pod's address, from the replica count: all of them found the cluster together. */}}
{{- define "debughost.seeds" -}}
{{- $fullname := include "debughost.fullname" . -}}
{{- $suffix := include "debughost.peerSuffix" . -}}
{{- $seeds := list -}}
{{- range $i := until (int .Values.replicas) -}}
{{- $seeds = append $seeds (printf "%s-%d.%s" $fullname $i $suffix) -}}
{{- end -}}
{{- join "," $seeds -}}
{{- end -}}

{{/* A majority of the members: what the PodDisruptionBudget keeps running. */}}
{{- define "debughost.quorum" -}}
{{- add (div (int .Values.replicas) 2) 1 -}}
{{- end -}}

{{- define "debughost.authSecret" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else -}}
{{- printf "%s-auth" (include "debughost.fullname" .) -}}
{{- end -}}
{{- end -}}
