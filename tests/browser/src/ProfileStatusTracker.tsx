// React Profile Status Component with Intelligent Polling
import React, { useState, useEffect, useCallback } from "react";

interface ProfileStatusProps {
    username: string;
    onCompleted: (profileData: any) => void;
    onError: (error: string) => void;
}

export const ProfileStatusTracker: React.FC<ProfileStatusProps> = ({
    username,
    onCompleted,
    onError,
}) => {
    const [status, setStatus] = useState<any>(null);
    const [polling, setPolling] = useState(false);
    const [pollingInterval, setPollingInterval] =
        useState<NodeJS.Timeout | null>(null);

    const checkStatus = useCallback(async () => {
        try {
            const response = await fetch(`/api/profile/${username}/status`);
            const result = await response.json();

            if (result.success) {
                setStatus(result.data);

                // Handle completion
                if (result.data.completed) {
                    setPolling(false);
                    onCompleted(result.data);
                    return;
                }

                // Handle failure
                if (
                    result.data.status === "FAILED" &&
                    !result.data.is_retry_eligible
                ) {
                    setPolling(false);
                    onError(
                        `Processing failed: ${
                            result.data.error_message || "Unknown error"
                        }`
                    );
                    return;
                }

                // Adjust polling interval based on recommendation
                const recommendedInterval =
                    result.data.recommended_polling_interval;
                if (recommendedInterval === "stop") {
                    setPolling(false);
                } else {
                    updatePollingFrequency(recommendedInterval);
                }
            } else {
                onError("Failed to check status");
            }
        } catch (error) {
            console.error("Status check error:", error);
            onError("Network error during status check");
        }
    }, [username, onCompleted, onError]);

    const updatePollingFrequency = (interval: string) => {
        if (pollingInterval) {
            clearInterval(pollingInterval);
        }

        const ms = parsePollingInterval(interval);
        const newInterval = setInterval(checkStatus, ms);
        setPollingInterval(newInterval);
    };

    const parsePollingInterval = (interval: string): number => {
        const match = interval.match(/(\d+)\s*(seconds?|minutes?)/);
        if (match) {
            const value = parseInt(match[1]);
            const unit = match[2];
            return unit.startsWith("minute") ? value * 60 * 1000 : value * 1000;
        }
        return 30000; // Default 30 seconds
    };

    useEffect(() => {
        if (username) {
            setPolling(true);
            checkStatus(); // Initial check

            // Start polling
            const initialInterval = setInterval(checkStatus, 30000);
            setPollingInterval(initialInterval);

            return () => {
                if (initialInterval) clearInterval(initialInterval);
                setPolling(false);
            };
        }
    }, [username, checkStatus]);

    if (!status) {
        return <div className="status-loading">Checking status...</div>;
    }

    return (
        <div className="profile-status-tracker">
            <div className={`status-indicator ${status.status?.toLowerCase()}`}>
                <h4>Profile Processing Status</h4>
                <p className="status-message">{status.message}</p>

                {status.completed ? (
                    <div className="completion-info">
                        <p>‚úÖ Processing completed successfully!</p>
                        <p>
                            Followers:{" "}
                            {status.followers_count?.toLocaleString()}
                        </p>
                        <p>Posts: {status.posts_count?.toLocaleString()}</p>
                        <p>
                            Data age: {status.profile_age_hours}h (
                            {status.data_freshness})
                        </p>
                    </div>
                ) : (
                    <div className="progress-info">
                        {status.processing_stage && (
                            <div className="stage-info">
                                <p>
                                    Stage:{" "}
                                    {status.processing_stage.replace("_", " ")}
                                </p>
                                {status.processing_duration_seconds && (
                                    <p>
                                        Duration:{" "}
                                        {Math.round(
                                            status.processing_duration_seconds
                                        )}
                                        s
                                    </p>
                                )}
                            </div>
                        )}

                        {status.queue_position && (
                            <div className="queue-info">
                                <p>Queue position: #{status.queue_position}</p>
                                <p>
                                    Estimated time:{" "}
                                    {status.estimated_time_remaining}
                                </p>
                            </div>
                        )}

                        {status.error_message && (
                            <div className="error-info">
                                <p className="error">
                                    Error: {status.error_message}
                                </p>
                                {status.is_retry_eligible && (
                                    <p>
                                        Retry available at:{" "}
                                        {new Date(
                                            status.next_retry_time
                                        ).toLocaleTimeString()}
                                    </p>
                                )}
                            </div>
                        )}

                        {polling && (
                            <div className="polling-info">
                                <span className="spinner"></span>
                                <p>
                                    Checking every{" "}
                                    {status.recommended_polling_interval}
                                </p>
                            </div>
                        )}
                    </div>
                )}
            </div>
        </div>
    );
};
